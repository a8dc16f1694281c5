//! The broker against a real AWS-compatible server: moto's server mode on loopback (see
//! `perimeter_testkit::moto`). Chains are assumed with aws-sdk-sts; moto's own record of the
//! roles it was asked to assume (`/moto-api/data.json`) is the independent witness of how many
//! calls reached STS and with which external ids.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use perimeter_creds::broker::{
    ChainError, Clock, CredentialCache, ManualClock, RefreshPolicy, RoleChain, Sts, StsSettings,
    SystemClock,
};
use perimeter_creds::{ExternalUri, parse};
use perimeter_testkit::moto::Moto;
use serde_json::Value;

const FIRST: &str = "arn:aws:iam::111111111111:role/first";
const SECOND: &str = "arn:aws:iam::222222222222:role/second";

fn chain(uri: &str) -> RoleChain {
    match parse(uri).expect("valid uri") {
        ExternalUri::S3(u) => RoleChain::of_s3(&u),
        other => panic!("not s3: {other:?}"),
    }
}

/// Base keys (moto accepts any until IAM checks are on), a two-hop chain, an external id on the
/// first hop.
fn two_hops() -> RoleChain {
    chain(&format!(
        "s3://bucket/p?AUTH=specified&AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\
         &AWS_SECRET_ACCESS_KEY=base-secret&ASSUME_ROLE={FIRST};external_id=ext-4242,{SECOND}"
    ))
}

async fn sts(moto: &Moto) -> Arc<Sts> {
    Arc::new(
        Sts::new(StsSettings {
            endpoint_url: Some(moto.url()),
            session_name: "perimeter-test".into(),
            ..StsSettings::default()
        })
        .await
        .expect("sts"),
    )
}

/// The AssumeRole calls moto recorded: (role ARN, external id).
fn assumed(moto: &Moto) -> Vec<(String, Option<String>)> {
    let out = moto.python(
        "import os, urllib.request\n\
         print(urllib.request.urlopen(os.environ['MOTO_URL'] + '/moto-api/data.json').read().decode())",
    );
    let v: Value = serde_json::from_str(&out).expect("moto data");
    v["sts"]["AssumedRole"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["role_arn"].as_str().unwrap_or_default().to_string(),
                r["external_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_hop_chain_with_an_external_id_ends_in_the_last_role() {
    let moto = Moto::start();
    let sts = sts(&moto).await;
    let creds = sts.assume(&two_hops()).await.expect("assumed");
    assert_eq!(
        creds.assumed_role_arn,
        "arn:aws:sts::222222222222:assumed-role/second/perimeter-test"
    );
    let who = sts
        .caller_identity(&creds)
        .await
        .expect("GetCallerIdentity");
    assert_eq!(
        who,
        "arn:aws:sts::222222222222:assumed-role/second/perimeter-test"
    );
    assert!(creds.expiration > SystemTime::now() + Duration::from_secs(30 * 60));
    assert_eq!(
        assumed(&moto),
        vec![
            (FIRST.to_string(), Some("ext-4242".to_string())),
            (SECOND.to_string(), None)
        ]
    );
    assert_eq!(sts.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_callers_share_one_assumption() {
    let moto = Moto::start();
    let cache = CredentialCache::new(
        sts(&moto).await,
        Arc::new(SystemClock),
        RefreshPolicy::default(),
    );
    let chain = two_hops();
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let (cache, chain) = (cache.clone(), chain.clone());
            tokio::spawn(async move { cache.get(&chain).await })
        })
        .collect();
    let mut keys = HashSet::new();
    for c in callers {
        keys.insert(c.await.expect("joined").expect("credentials").access_key_id);
    }
    assert_eq!(keys.len(), 1, "every caller got the same credentials");
    assert_eq!(cache.stats().fills, 1);
    assert_eq!(cache.sts().calls(), 2, "one assumption of two hops");
    assert_eq!(assumed(&moto).len(), 2, "moto saw two AssumeRole calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_refreshed_before_they_expire() {
    let moto = Moto::start();
    let clock = ManualClock::new(SystemTime::now());
    let policy = RefreshPolicy::default();
    let cache = CredentialCache::new(sts(&moto).await, Arc::new(clock.clone()), policy);
    let chain = two_hops();
    let first = cache.get(&chain).await.expect("credentials");
    let held = cache.peek(&chain).expect("cached");
    let refresh_at = cache.next_refresh(&chain).expect("a refresh is planned");
    assert_eq!(refresh_at, held.expires_at - policy.refresh_before);

    // Up to just before the refresh time, callers get the same credentials, with no STS call.
    clock.set(refresh_at - Duration::from_secs(1));
    assert_eq!(
        cache.get(&chain).await.expect("cached").access_key_id,
        first.access_key_id
    );
    assert_eq!(cache.sts().calls(), 2);

    // At the refresh time the background refresher assumes the chain again, before expiry.
    clock.set(refresh_at);
    perimeter_testkit::wait_until("the background refresh", 30, || {
        cache.stats().refreshes == 1
    });
    assert!(clock.now() < held.expires_at);
    let second = cache.get(&chain).await.expect("refreshed");
    assert_ne!(second.access_key_id, first.access_key_id);
    assert_eq!(cache.sts().calls(), 4);
    assert_eq!(
        cache.stats().fills,
        1,
        "no caller had to wait for an assumption"
    );
    let next = cache
        .next_refresh(&chain)
        .expect("the next refresh is planned");
    assert!(next > refresh_at + Duration::from_secs(30 * 60), "{next:?}");

    // Past the old expiry, callers still get valid credentials without waiting.
    clock.set(held.expires_at + Duration::from_secs(1));
    let third = cache.get(&chain).await.expect("still valid");
    assert_eq!(third.access_key_id, second.access_key_id);
    assert_eq!(cache.stats().fills, 1);

    // A job running for hours: minute by minute over four more hours, every credential handed
    // out has at least 15 minutes left, and no caller ever waited for STS.
    let end = clock.now() + Duration::from_secs(4 * 3600);
    while clock.now() < end {
        clock.advance(Duration::from_secs(60));
        perimeter_testkit::wait_until("no refresh overdue", 30, || {
            cache
                .next_refresh(&chain)
                .is_some_and(|at| at > clock.now())
        });
        let c = cache.get(&chain).await.expect("credentials");
        let held = cache.peek(&chain).expect("cached");
        assert_eq!(c.access_key_id, held.credentials.access_key_id);
        assert!(
            held.expires_at >= clock.now() + policy.refresh_before,
            "handed out with less than 15 minutes left"
        );
    }
    let refreshes = cache.stats().refreshes;
    assert!(
        refreshes >= 6,
        "{refreshes} refreshes in four hours and a quarter"
    );
    assert_eq!(cache.stats().fills, 1);
    assert_eq!(cache.stats().failures, 0);
}

/// IAM as moto enforces it: a user allowed to assume roles, a first role with no permission
/// to assume anything, a second role.
const IAM_SETUP: &str = r#"
import boto3, json, os
iam = boto3.client('iam', endpoint_url=os.environ['MOTO_URL'])
trust = json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow',
    'Principal': {'AWS': '*'}, 'Action': 'sts:AssumeRole'}]})
iam.create_user(UserName='base')
iam.put_user_policy(UserName='base', PolicyName='assume', PolicyDocument=json.dumps(
    {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': 'sts:AssumeRole',
    'Resource': '*'}]}))
key = iam.create_access_key(UserName='base')['AccessKey']
for name in ('first', 'second'):
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
print(key['AccessKeyId'], key['SecretAccessKey'])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hop_names_itself_and_the_providers_reason() {
    let moto = Moto::start();
    let out = moto.python(IAM_SETUP);
    let mut words = out.split_whitespace();
    let (key, secret) = (words.next().expect("key id"), words.next().expect("secret"));
    moto.enforce_iam();
    let sts = sts(&moto).await;
    let account = "123456789012";
    let first = format!("arn:aws:iam::{account}:role/first");
    let second = format!("arn:aws:iam::{account}:role/second");

    // The user may assume the first role; the first role may not assume the second.
    let good_base = chain(&format!(
        "s3://bucket?AUTH=specified&AWS_ACCESS_KEY_ID={key}&AWS_SECRET_ACCESS_KEY={}\
         &ASSUME_ROLE={first},{second}",
        perimeter_creds::encode(secret)
    ));
    let e = sts
        .assume(&good_base)
        .await
        .expect_err("the second hop is denied");
    let ChainError::Hop {
        hop,
        of,
        role,
        code,
        ..
    } = &e
    else {
        panic!("not a hop error: {e:?}");
    };
    assert_eq!((*hop, *of, role.as_str()), (2, 2, second.as_str()), "{e}");
    assert_eq!(code.as_deref(), Some("AccessDenied"), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("hop 2 of 2 ({second}): AccessDenied")),
        "{e}"
    );
    assert!(!e.to_string().contains(secret), "{e}");

    // Unknown base keys fail at the first hop.
    let bad_base = chain(&format!(
        "s3://bucket?AUTH=specified&AWS_ACCESS_KEY_ID=AKIAUNKNOWNUNKNOWN00&AWS_SECRET_ACCESS_KEY=nope\
         &ASSUME_ROLE={first},{second}"
    ));
    let e = sts.assume(&bad_base).await.expect_err("unknown keys");
    assert!(
        matches!(&e, ChainError::Hop { hop: 1, of: 2, code: Some(c), .. } if c == "InvalidClientTokenId"),
        "{e:?}"
    );
}
