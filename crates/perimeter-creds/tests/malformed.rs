//! A named table of malformed URIs: each is refused, the message starts with the part at fault,
//! and says what is expected.

use perimeter_creds::parse;

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const ROLE: &str = "arn:aws:iam::123456789012:role/backup";
/// base64 of a one-line PEM certificate block.
const CERT: &str =
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";

#[test]
fn malformed_uris_name_the_part_at_fault() {
    let keys = format!("AWS_ACCESS_KEY_ID={AKID}&AWS_SECRET_ACCESS_KEY=sekrit");
    let cases: Vec<(&str, String, &str)> = vec![
        // (what, uri, the part the message must start with)
        ("empty", "".into(), "uri"),
        ("space", "s3://b b?AUTH=implicit".into(), "uri"),
        ("non-ASCII", "s3://bücket?AUTH=implicit".into(), "uri"),
        ("no scheme", "bucket/path".into(), "scheme"),
        ("bad scheme chars", "s_3://bucket".into(), "scheme"),
        ("unsupported scheme", "nodelocal://1/backup".into(), "scheme"),
        ("http sink", "https://example.com".into(), "scheme"),
        ("userinfo", format!("s3://key:sekrit@bucket?{keys}"), "userinfo"),
        ("fragment", "s3://bucket?AUTH=implicit#x".into(), "fragment"),
        ("bad path escape", "s3://bucket/a%zz?AUTH=implicit".into(), "path"),
        ("no bucket", "s3:///path?AUTH=implicit".into(), "bucket"),
        ("bucket upper case", "s3://Bucket?AUTH=implicit".into(), "bucket"),
        ("bucket too short", "s3://ab?AUTH=implicit".into(), "bucket"),
        ("bucket with port", "s3://bucket:9000?AUTH=implicit".into(), "bucket"),
        ("bucket like an IP", "s3://10.0.0.1?AUTH=implicit".into(), "bucket"),
        ("gcs bucket dash end", "gs://bucket-?AUTH=implicit".into(), "bucket"),
        ("azure container", "azure-blob://Con?AUTH=implicit&AZURE_ACCOUNT_NAME=a1b2c".into(), "container"),
        ("empty query", "s3://bucket?".into(), "query"),
        ("stray &", "s3://bucket?AUTH=implicit&&AWS_REGION=us-east-1".into(), "query"),
        ("no =", "s3://bucket?AUTH".into(), "query"),
        ("no name", "s3://bucket?=implicit".into(), "query"),
        ("unknown param", "s3://bucket?AUTH=implicit&REGION=us-east-1".into(), "query"),
        ("bad escape in name", "s3://bucket?AU%ZTH=implicit".into(), "query"),
        ("wrong case", "s3://bucket?auth=implicit".into(), "AUTH"),
        ("other scheme's param", "s3://bucket?AUTH=implicit&sasl_user=u".into(), "sasl_user"),
        ("duplicate", "s3://bucket?AUTH=implicit&AUTH=implicit".into(), "AUTH"),
        ("empty value", "s3://bucket?AUTH=".into(), "AUTH"),
        ("bad value escape", format!("s3://bucket?AWS_ACCESS_KEY_ID={AKID}&AWS_SECRET_ACCESS_KEY=a%2"), "AWS_SECRET_ACCESS_KEY"),
        ("AUTH value", "s3://bucket?AUTH=default".into(), "AUTH"),
        ("specified by default without keys", "s3://bucket".into(), "AWS_ACCESS_KEY_ID"),
        ("specified without secret", format!("s3://bucket?AUTH=specified&AWS_ACCESS_KEY_ID={AKID}"), "AWS_SECRET_ACCESS_KEY"),
        ("implicit with keys", format!("s3://bucket?AUTH=implicit&{keys}"), "AWS_ACCESS_KEY_ID"),
        ("implicit with token", "s3://bucket?AUTH=implicit&AWS_SESSION_TOKEN=t".into(), "AWS_SESSION_TOKEN"),
        ("ASSUME_ROLE without AUTH", format!("s3://bucket?{keys}&ASSUME_ROLE={ROLE}"), "ASSUME_ROLE"),
        ("short account id", "s3://bucket?AUTH=implicit&ASSUME_ROLE=arn:aws:iam::1234:role/x".into(), "ASSUME_ROLE[0]"),
        ("user not role", "s3://bucket?AUTH=implicit&ASSUME_ROLE=arn:aws:iam::123456789012:user/x".into(), "ASSUME_ROLE[0]"),
        ("bad partition", "s3://bucket?AUTH=implicit&ASSUME_ROLE=arn:azure:iam::123456789012:role/x".into(), "ASSUME_ROLE[0]"),
        ("empty chain link", format!("s3://bucket?AUTH=implicit&ASSUME_ROLE={ROLE},,{ROLE}"), "ASSUME_ROLE[1]"),
        ("unknown role option", format!("s3://bucket?AUTH=implicit&ASSUME_ROLE={ROLE};session=x"), "ASSUME_ROLE[0]"),
        ("external id too short", format!("s3://bucket?AUTH=implicit&ASSUME_ROLE={ROLE};external_id=x"), "ASSUME_ROLE[0]"),
        ("partition vs region", format!("s3://bucket?AUTH=implicit&AWS_REGION=cn-north-1&ASSUME_ROLE={ROLE}"), "ASSUME_ROLE[0]"),
        ("bad region", "s3://bucket?AUTH=implicit&AWS_REGION=US-EAST-1".into(), "AWS_REGION"),
        ("bad access key id", "s3://bucket?AWS_ACCESS_KEY_ID=short&AWS_SECRET_ACCESS_KEY=s".into(), "AWS_ACCESS_KEY_ID"),
        ("endpoint scheme", "s3://bucket?AUTH=implicit&AWS_ENDPOINT=ftp://minio".into(), "AWS_ENDPOINT"),
        ("endpoint userinfo", "s3://bucket?AUTH=implicit&AWS_ENDPOINT=https://u:p@minio".into(), "AWS_ENDPOINT"),
        ("endpoint port", "s3://bucket?AUTH=implicit&AWS_ENDPOINT=https://minio:99999".into(), "AWS_ENDPOINT"),
        ("gcs specified without key", "gs://bucket?AUTH=specified".into(), "CREDENTIALS"),
        ("gcs implicit with key", "gs://bucket?AUTH=implicit&CREDENTIALS=e30=".into(), "CREDENTIALS"),
        ("gcs both", "gs://bucket?CREDENTIALS=e30=&BEARER_TOKEN=t".into(), "BEARER_TOKEN"),
        ("gcs key not base64", "gs://bucket?CREDENTIALS=%21%21".into(), "CREDENTIALS"),
        ("gcs key not a key", "gs://bucket?CREDENTIALS=e30=".into(), "CREDENTIALS"),
        ("gcs service account", "gs://bucket?AUTH=implicit&ASSUME_ROLE=someone@gmail.com".into(), "ASSUME_ROLE[0]"),
        ("gcs external id", "gs://bucket?AUTH=implicit&ASSUME_ROLE=a@p.iam.gserviceaccount.com;external_id=xy".into(), "ASSUME_ROLE[0]"),
        ("azure no account", "azure-blob://cont?AUTH=implicit".into(), "AZURE_ACCOUNT_NAME"),
        ("azure account chars", "azure-blob://cont?AUTH=implicit&AZURE_ACCOUNT_NAME=My_Acct".into(), "AZURE_ACCOUNT_NAME"),
        ("azure no key", "azure-blob://cont?AZURE_ACCOUNT_NAME=acct1".into(), "AZURE_ACCOUNT_KEY"),
        ("azure key and principal", "azure-blob://cont?AZURE_ACCOUNT_NAME=acct1&AZURE_ACCOUNT_KEY=a2V5&AZURE_CLIENT_ID=x".into(), "AZURE_CLIENT_ID"),
        ("azure half principal", "azure-blob://cont?AZURE_ACCOUNT_NAME=acct1&AZURE_CLIENT_ID=0f0e0d0c-0b0a-0908-0706-050403020100&AZURE_CLIENT_SECRET=s".into(), "AZURE_TENANT_ID"),
        ("azure implicit with secret", "azure-blob://cont?AUTH=implicit&AZURE_ACCOUNT_NAME=acct1&AZURE_CLIENT_SECRET=s".into(), "AZURE_CLIENT_SECRET"),
        ("azure environment", "azure-blob://cont?AUTH=implicit&AZURE_ACCOUNT_NAME=acct1&AZURE_ENVIRONMENT=mars".into(), "AZURE_ENVIRONMENT"),
        ("kafka no broker", "kafka://".into(), "authority"),
        ("kafka empty broker", "kafka://a:9092,,b:9092".into(), "broker[1]"),
        ("kafka broker port", "kafka://a:9092,b:0".into(), "broker[1]"),
        ("kafka broker host", "kafka://a_b:9092".into(), "broker[0]"),
        ("kafka path", "kafka://a:9092/topic".into(), "path"),
        ("kafka topic chars", "kafka://a?topic_name=a%2Fb".into(), "topic_name"),
        ("kafka bool", "kafka://a?tls_enabled=yes".into(), "tls_enabled"),
        ("tls param without tls", format!("kafka://a?ca_cert={CERT}"), "ca_cert"),
        ("client_key without client_cert", "kafka://a?tls_enabled=true&client_key=a2V5".into(), "client_cert"),
        ("ca_cert not PEM", "kafka://a?tls_enabled=true&ca_cert=aGVsbG8=".into(), "ca_cert"),
        ("sasl param without sasl", "kafka://a?sasl_user=u&sasl_password=p".into(), "sasl_user"),
        ("sasl disabled", "kafka://a?sasl_enabled=false&sasl_mechanism=PLAIN".into(), "sasl_mechanism"),
        ("sasl mechanism", "kafka://a?sasl_enabled=true&sasl_mechanism=GSSAPI".into(), "sasl_mechanism"),
        ("plain without password", "kafka://a?sasl_enabled=true&sasl_user=u".into(), "sasl_password"),
        ("scram with oauth param", "kafka://a?sasl_enabled=true&sasl_mechanism=SCRAM-SHA-256&sasl_user=u&sasl_password=p&sasl_client_id=c".into(), "sasl_client_id"),
        ("oauth without token url", "kafka://a?sasl_enabled=true&sasl_mechanism=OAUTHBEARER&sasl_client_id=c&sasl_client_secret=s".into(), "sasl_token_url"),
        ("oauth http token url", "kafka://a?sasl_enabled=true&sasl_mechanism=OAUTHBEARER&sasl_client_id=c&sasl_client_secret=s&sasl_token_url=http://idp/t".into(), "sasl_token_url"),
        ("msk without session", format!("kafka://a?tls_enabled=true&sasl_enabled=true&sasl_mechanism=AWS_MSK_IAM&sasl_aws_region=us-east-1&sasl_aws_iam_role_arn={ROLE}"), "sasl_aws_iam_session_name"),
        ("msk without tls", format!("kafka://a?sasl_enabled=true&sasl_mechanism=AWS_MSK_IAM&sasl_aws_region=us-east-1&sasl_aws_iam_role_arn={ROLE}&sasl_aws_iam_session_name=s1"), "tls_enabled"),
        ("msk bad arn", "kafka://a?tls_enabled=true&sasl_enabled=true&sasl_mechanism=AWS_MSK_IAM&sasl_aws_region=us-east-1&sasl_aws_iam_role_arn=arn:aws:iam::1:role/x&sasl_aws_iam_session_name=s1".into(), "sasl_aws_iam_role_arn"),
        ("webhook no host", "webhook-https:///hook".into(), "host"),
        ("webhook IP spelling", "webhook-https://0x7f.1/hook".into(), "host"),
        ("webhook port", "webhook-https://hooks.example.com:https/".into(), "port"),
        ("webhook unknown", "webhook-https://hooks.example.com/?tls_enabled=true".into(), "tls_enabled"),
    ];
    assert!(cases.len() >= 40, "{}", cases.len());
    let mut failures = Vec::new();
    for (what, uri, part) in &cases {
        match parse(uri) {
            Ok(u) => failures.push(format!("{what}: accepted as {u:?}")),
            Err(e) => {
                let text = e.to_string();
                if !text.starts_with(&format!("{part}: ")) || e.part().to_string() != *part {
                    failures.push(format!("{what}: expected part {part:?}, got {text:?}"));
                }
                // Every message says what is wanted, not only what is wrong.
                let guiding = [
                    "expected",
                    "required",
                    "needs",
                    "must",
                    "give",
                    "drop",
                    "write",
                    "use",
                    "not accepted",
                    "not allowed",
                    "not used",
                    "percent-encode",
                    "case-sensitive",
                    "more than once",
                    "empty",
                    "cannot",
                    "not a parameter",
                    "is not",
                    "put",
                ];
                if !guiding.iter().any(|g| text.contains(g)) {
                    failures.push(format!("{what}: message gives no direction: {text:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
