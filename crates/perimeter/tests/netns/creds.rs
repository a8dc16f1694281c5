//! Credentials end to end (issue: chained short-lived roles): the aws CLI, configured only with
//! `perimeter creds serve`'s endpoint, writes a backup object to moto's S3 through a Perimeter
//! egress gateway whose one rule allows exactly that endpoint; with the rule removed the same
//! write is refused at the gateway; `perimeter creds check --cluster` shows both verdicts.
//!
//! moto stands in the upstream namespace on the allowed address, port 5000 (`allowed.test`);
//! the credential endpoint assumes its chain at moto directly, by address, starting with the
//! cluster's functional role for backups, which it reads from the control plane.

use std::process::Command;

use perimeter_testkit::api::{add_rule, delete_rule_applied, set_policy, wait_rule_active};
use perimeter_testkit::creds::CredsServe;
use perimeter_testkit::moto::{Moto, venv_bin};
use perimeter_testkit::wait_until;
use serde_json::{Value, json};

use crate::fixture::{Net, NetOptions};
use crate::{BIN, start_perimeter_on};

const PORT: u16 = 5000;
const BUCKET: &str = "perimeter-backups";

fn uri() -> String {
    format!(
        "s3://{BUCKET}/c1?AUTH=implicit&AWS_REGION=us-east-1\
         &AWS_ENDPOINT=http://allowed.test:{PORT}\
         &ASSUME_ROLE=arn:aws:iam::123456789012:role/backup;external_id=ext-tenant-9"
    )
}

/// `aws <args>` through the gateway, with only the credential endpoint to authenticate.
fn aws(creds: &CredsServe, proxy: &str, args: &[&str]) -> (bool, String) {
    let mut c = Command::new(venv_bin("aws"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.to_ascii_lowercase().ends_with("_proxy") {
            c.env_remove(k);
        }
    }
    let out = c
        .args(args)
        .args(["--endpoint-url", &format!("http://allowed.test:{PORT}")])
        .env("HTTP_PROXY", format!("http://{proxy}"))
        .env("HTTPS_PROXY", format!("http://{proxy}"))
        // The credential endpoint is on loopback, beside the workload: not through the proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds.uri("backup"))
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", &creds.token)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/perimeter-test-aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/perimeter-test-aws-credentials",
        )
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("aws");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `aws s3api put-object` of `body` at `key` in the bucket, through the gateway.
fn put(creds: &CredsServe, proxy: &str, key: &str, body: &str) -> (bool, String) {
    aws(
        creds,
        proxy,
        &[
            "s3api",
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            key,
            "--body",
            body,
        ],
    )
}

/// `creds check <uri> --cluster <id> --output json`: the storage destination's egress verdict.
fn storage_verdict(url: &str, key: &str, cid: &str) -> Value {
    let out = Command::new(BIN)
        .args([
            "creds",
            "check",
            &uri(),
            "--cluster",
            cid,
            "--output",
            "json",
        ])
        .env("PERIMETER_URL", url)
        .env("PERIMETER_API_KEY", key)
        .output()
        .expect("creds check");
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["destinations"][0]["host"], "allowed.test", "{v:#}");
    assert_eq!(v["destinations"][0]["port"], PORT, "{v:#}");
    v["destinations"][0]["egress"].clone()
}

#[test]
fn the_aws_cli_writes_through_the_gateway_only_while_a_rule_allows_the_endpoint() {
    let net = Net::new(NetOptions::default());
    let allowed = net.a.allowed.to_string();
    // Path-style requests to a name with a dot (allowed.test) are not a bucket in the host.
    let moto = Moto::start_with(
        &["ip", "netns", "exec", &net.ns],
        &allowed,
        PORT,
        &[("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")],
    );
    moto.python(&format!(
        "import boto3, os\n\
         boto3.client('s3', endpoint_url=os.environ['MOTO_URL']).create_bucket(Bucket='{BUCKET}')"
    ));
    let hosts = net.hosts.to_str().expect("UTF-8 path").to_string();
    let p = start_perimeter_on(
        &net,
        "creds-netns",
        "gateway",
        &["--log-format", "json"],
        &["--hosts-file", &hosts, "--dns-server", &net.dns],
    );
    set_policy(&p.s, &p.key, &p.cid, false);
    let rule = add_rule(
        &p.s,
        &p.key,
        &p.cid,
        json!({"name": "backups-endpoint", "type": "FQDN", "destination": "allowed.test",
               "ports": [PORT], "description": "the backup store"}),
    );
    let rid = rule["id"].as_str().expect("rule id").to_string();
    wait_rule_active(&p.s, &p.key, &p.cid, &rid);

    // The platform's functional role for the cluster's backups heads the chain: the endpoint
    // reads it from the control plane.
    let roles = perimeter_testkit::ok(
        &p.s,
        &p.key,
        "PUT",
        &format!("/api/v1/clusters/{}/credential-roles", p.cid),
        Some(json!({"roles": {"backup":
            "arn:aws:iam::999999999999:role/crl-dr-store-user-{cluster_id}"}})),
    );
    let functional = roles["roles"]["backup"]["role_arn"]
        .as_str()
        .expect("expanded role")
        .to_string();
    let creds = CredsServe::start(
        BIN,
        &net.dir.path().join("creds"),
        &format!(
            "[sts]\nendpoint_url = \"{}\"\n\n[control_plane]\nurl = \"{}\"\n\
             api_key_file = \"{}\"\n\n[profiles.backup]\nuri = \"{}\"\ncluster = \"{}\"\n",
            moto.url(),
            p.s.url(),
            net.dir.path().join("cp/admin-api-key").display(),
            uri(),
            p.cid
        ),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIABASEBASEBASE0002"),
            ("AWS_SECRET_ACCESS_KEY", "base-secret-of-the-node"),
        ],
    );
    let body = net.dir.path().join("backup-1.sst");
    std::fs::write(&body, b"backup rows").expect("body");
    let body = body.to_str().expect("UTF-8 path");

    // Allowed: creds check says so, and the write goes through the gateway as the role.
    let before = storage_verdict(&p.s.url(), &p.key, &p.cid);
    assert_eq!(before["allowed"], true, "{before:#}");
    assert_eq!(before["rule"], "backups-endpoint", "{before:#}");
    let (ok, out) = put(&creds, &p.gw.proxy, "c1/backup-1", body);
    assert!(ok, "{out}");
    let (ok, out) = aws(
        &creds,
        &p.gw.proxy,
        &[
            "sts",
            "get-caller-identity",
            "--query",
            "Arn",
            "--output",
            "text",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        "arn:aws:sts::123456789012:assumed-role/backup/perimeter"
    );
    assert_eq!(
        moto.python(&format!(
            "import boto3, os\n\
             s3 = boto3.client('s3', endpoint_url=os.environ['MOTO_URL'])\n\
             print(s3.get_object(Bucket='{BUCKET}', Key='c1/backup-1')['Body'].read().decode())"
        ))
        .trim(),
        "backup rows"
    );
    assert!(
        creds.banner.contains(&format!(
            "profile backup: implicit -> {functional} -> arn:aws:iam::123456789012:role/backup"
        )),
        "{}",
        creds.banner
    );
    let assumed = moto.python(
        "import json, os, urllib.request\n\
         d = json.load(urllib.request.urlopen(os.environ['MOTO_URL'] + '/moto-api/data.json'))\n\
         print(' '.join(r['role_arn'] for r in d['sts']['AssumedRole']))",
    );
    assert_eq!(
        assumed.trim(),
        format!("{functional} arn:aws:iam::123456789012:role/backup")
    );
    wait_until("the gateway logs the allowed write", 30, || {
        p.gw.decisions().iter().any(|d| {
            d["destination"] == "allowed.test"
                && d["port"] == PORT
                && d["path"] == "/perimeter-backups/c1/backup-1"
                && d["verdict"] == "allowed"
                && d["rule"] == "backups-endpoint"
        })
    });

    // The rule removed: creds check says denied and what to add; the same write is refused
    // at the gateway and nothing reaches the store.
    delete_rule_applied(&p.s, &p.key, &p.cid, &rid);
    let after = storage_verdict(&p.s.url(), &p.key, &p.cid);
    assert_eq!(after["allowed"], false, "{after:#}");
    assert_eq!(after["reason"], "no_rule_for_destination", "{after:#}");
    assert!(
        after["rule_to_add"]
            .as_str()
            .is_some_and(|r| r.contains("--destination allowed.test --port 5000")),
        "{after:#}"
    );
    let (ok, out) = put(&creds, &p.gw.proxy, "c1/backup-2", body);
    assert!(!ok, "the write went through without a rule: {out}");
    assert!(out.contains("403"), "{out}");
    wait_until("the gateway logs the refused write", 30, || {
        p.gw.decisions().iter().any(|d| {
            d["destination"] == "allowed.test"
                && d["path"] == "/perimeter-backups/c1/backup-2"
                && d["verdict"] == "denied"
                && d["reason"] == "no_rule_for_destination"
        })
    });
    let listed = moto.python(&format!(
        "import boto3, os\n\
         s3 = boto3.client('s3', endpoint_url=os.environ['MOTO_URL'])\n\
         print(sorted(o['Key'] for o in s3.list_objects_v2(Bucket='{BUCKET}').get('Contents', [])))"
    ));
    assert_eq!(listed.trim(), "['c1/backup-1']");
}
