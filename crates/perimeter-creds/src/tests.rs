//! What valid URIs mean: auth mode, role chain, destinations, warnings.

use base64::Engine;

use super::*;

const ROLE_A: &str = "arn:aws:iam::123456789012:role/backup";
const ROLE_B: &str = "arn:aws:iam::210987654321:role/ops/restore";
const AKID: &str = "AKIAIOSFODNN7EXAMPLE";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn dests(uri: &str) -> Vec<String> {
    parse(uri)
        .unwrap_or_else(|e| panic!("{uri}: {e}"))
        .destinations()
        .iter()
        .map(|d| format!("{d} {}", d.purpose.as_str()))
        .collect()
}

#[test]
fn s3_specified_implicit_and_chains() {
    let u = parse(&format!(
        "s3://backups/cluster-1?AWS_ACCESS_KEY_ID={AKID}&AWS_SECRET_ACCESS_KEY=wJalr%2BXUtnFEMI&AWS_REGION=eu-west-1"
    ))
    .expect("valid");
    let ExternalUri::S3(s3) = &u else {
        panic!("{u:?}")
    };
    let AwsAuth::Specified {
        secret_access_key, ..
    } = &s3.auth
    else {
        panic!("{u:?}")
    };
    assert_eq!(secret_access_key.expose(), "wJalr+XUtnFEMI");
    assert_eq!(u.auth_mode(), "specified (access key)");
    assert!(!format!("{u:?}").contains("wJalr"), "Debug shows no secret");
    assert_eq!(
        dests(&format!(
            "s3://backups/x?AWS_ACCESS_KEY_ID={AKID}&AWS_SECRET_ACCESS_KEY=k&AWS_REGION=eu-west-1"
        )),
        ["backups.s3.eu-west-1.amazonaws.com:443 storage"]
    );
    assert_eq!(
        dests("s3://backups?AUTH=implicit"),
        ["backups.s3.amazonaws.com:443 storage"]
    );
    assert_eq!(
        dests("s3://b-1?AUTH=implicit&AWS_REGION=cn-north-1"),
        ["b-1.s3.cn-north-1.amazonaws.com.cn:443 storage"]
    );
    assert_eq!(
        dests("s3://b-1?AUTH=implicit&AWS_ENDPOINT=http%3A%2F%2Fminio.internal%3A9000"),
        ["minio.internal:9000 storage"]
    );
    assert_eq!(
        dests("s3://b-1?AUTH=implicit&AWS_ENDPOINT=https://10.1.2.3"),
        ["10.1.2.3:443 storage"]
    );
    let chained = format!(
        "s3://b-1?AUTH=implicit&AWS_REGION=us-east-2&ASSUME_ROLE={ROLE_A}%3Bexternal_id%3Dtenant-7%2C{ROLE_B}"
    );
    let u = parse(&chained).expect("valid");
    let chain = u.role_chain();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].principal, ROLE_A);
    assert_eq!(chain[0].external_id.map(Secret::expose), Some("tenant-7"));
    assert_eq!(
        (chain[1].principal.as_str(), chain[1].external_id),
        (ROLE_B, None)
    );
    assert_eq!(
        dests(&chained),
        [
            "b-1.s3.us-east-2.amazonaws.com:443 storage",
            "sts.us-east-2.amazonaws.com:443 assume-role"
        ]
    );
    // Specified keys may start a chain too; unencoded ';' ',' '=' in the value are fine.
    let u = parse(&format!(
        "s3://b-1?AUTH=specified&AWS_ACCESS_KEY_ID={AKID}&AWS_SECRET_ACCESS_KEY=s&AWS_SESSION_TOKEN=t&ASSUME_ROLE={ROLE_A};external_id=x1"
    ))
    .expect("valid");
    assert_eq!(u.auth_mode(), "specified (access key and session token)");
    assert_eq!(u.destinations()[1].to_string(), "sts.amazonaws.com:443");
}

#[test]
fn gcs_and_azure() {
    let key = b64(r#"{"type":"service_account","private_key":"-----BEGIN..."}"#);
    let u = parse(&format!("gs://my_bucket.v2/p?CREDENTIALS={key}")).expect("valid");
    assert_eq!(u.auth_mode(), "specified (service account key)");
    assert_eq!(
        dests(&format!("gs://my_bucket.v2/p?CREDENTIALS={key}")),
        [
            "storage.googleapis.com:443 storage",
            "oauth2.googleapis.com:443 token"
        ]
    );
    let sa = "gs://bkt?AUTH=implicit&ASSUME_ROLE=a@p.iam.gserviceaccount.com,b@q.iam.gserviceaccount.com";
    assert_eq!(parse(sa).expect("valid").role_chain().len(), 2);
    assert_eq!(
        dests(sa),
        [
            "storage.googleapis.com:443 storage",
            "iamcredentials.googleapis.com:443 impersonation"
        ]
    );
    assert_eq!(
        parse("gs://bkt?BEARER_TOKEN=ya29.x")
            .expect("valid")
            .auth_mode(),
        "specified (bearer token)"
    );

    let key = b64("not-really-a-key");
    assert_eq!(
        dests(&format!(
            "azure-blob://backups/p?AZURE_ACCOUNT_NAME=acct1&AZURE_ACCOUNT_KEY={key}"
        )),
        ["acct1.blob.core.windows.net:443 storage"]
    );
    let sp = "azure-blob://backups?AZURE_ACCOUNT_NAME=acct1&AZURE_ENVIRONMENT=azureusgovernmentcloud\
              &AZURE_CLIENT_ID=0f0e0d0c-0b0a-0908-0706-050403020100&AZURE_CLIENT_SECRET=s3cr3t\
              &AZURE_TENANT_ID=contoso.onmicrosoft.com";
    assert_eq!(
        dests(sp),
        [
            "acct1.blob.core.usgovcloudapi.net:443 storage",
            "login.microsoftonline.us:443 token"
        ]
    );
    let old = parse("azure://backups?AUTH=implicit&AZURE_ACCOUNT_NAME=acct1").expect("valid");
    assert_eq!(old.scheme(), "azure-blob");
    assert_eq!(old.warnings().len(), 1);
    assert!(
        parse("azure-storage://backups?AUTH=implicit&AZURE_ACCOUNT_NAME=acct1")
            .expect("valid")
            .warnings()[0]
            .contains("deprecated")
    );
}

#[test]
fn kafka_mechanisms() {
    assert_eq!(
        dests("kafka://k1.example.com,k2.example.com:9093,[::1]:9094,10.0.0.5"),
        [
            "k1.example.com:9092 broker",
            "k2.example.com:9093 broker",
            "[::1]:9094 broker",
            "10.0.0.5:9092 broker"
        ]
    );
    let scram = "kafka://k1:9092?tls_enabled=true&sasl_enabled=true&sasl_mechanism=SCRAM-SHA-512\
                 &sasl_user=cdc&sasl_password=pw&topic_prefix=crdb_";
    let u = parse(scram).expect("valid");
    assert_eq!(u.auth_mode(), "sasl SCRAM-SHA-512 over tls");
    assert!(u.warnings().is_empty());
    let plain = parse("kafka://k1?sasl_enabled=true&sasl_user=u&sasl_password=p").expect("valid");
    assert_eq!(plain.auth_mode(), "sasl PLAIN over plaintext");
    assert_eq!(plain.warnings().len(), 1);
    let oauth = "kafka://k1?tls_enabled=true&sasl_enabled=true&sasl_mechanism=OAUTHBEARER\
                 &sasl_client_id=c&sasl_client_secret=s&sasl_token_url=https%3A%2F%2Fidp.example.com%2Foauth%2Ftoken\
                 &sasl_scopes=a,b";
    assert_eq!(
        dests(oauth),
        ["k1:9092 broker", "idp.example.com:443 token"]
    );
    let msk = format!(
        "kafka://b-1.msk.example.com:9098?tls_enabled=true&sasl_enabled=true&sasl_mechanism=AWS_MSK_IAM\
         &sasl_aws_region=us-east-1&sasl_aws_iam_role_arn={ROLE_A}&sasl_aws_iam_session_name=cdc-1"
    );
    let u = parse(&msk).expect("valid");
    assert_eq!(u.role_chain()[0].principal, ROLE_A);
    assert_eq!(
        dests(&msk),
        [
            "b-1.msk.example.com:9098 broker",
            "sts.us-east-1.amazonaws.com:443 assume-role"
        ]
    );
    let cert = b64("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let key = b64("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
    let mtls = format!(
        "kafka://k1?tls_enabled=true&ca_cert={cert}&client_cert={cert}&client_key={key}&insecure_tls_skip_verify=true"
    );
    let u = parse(&mtls).expect("valid");
    assert_eq!(u.auth_mode(), "no sasl over mutual tls");
    assert!(u.warnings()[0].contains("not verified"));
}

#[test]
fn webhook() {
    assert_eq!(
        dests("webhook-https://hooks.example.com/services/T0/B0/tok"),
        ["hooks.example.com:443 webhook"]
    );
    assert_eq!(
        dests("webhook-https://hooks.example.com:8443?insecure_tls_skip_verify=false"),
        ["hooks.example.com:8443 webhook"]
    );
}
