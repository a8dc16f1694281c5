//! Redaction: named examples, then a property test that no secret survives, in any form, in
//! the redacted text, in an error message, or in the Debug of a parsed URI.

use base64::Engine;
use perimeter_creds::{encode, parse, redact};
use proptest::prelude::*;

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const ROLE: &str = "arn:aws:iam::123456789012:role/backup";

#[test]
fn examples() {
    let cases = [
        (
            "valid s3 keys",
            format!(
                "s3://bkt/p?AWS_ACCESS_KEY_ID={AKID}&AWS_SECRET_ACCESS_KEY=wJalr%2Fk&AWS_REGION=us-east-1"
            ),
            format!(
                "s3://bkt/p?AWS_ACCESS_KEY_ID={AKID}&AWS_SECRET_ACCESS_KEY=redacted&AWS_REGION=us-east-1"
            ),
        ),
        (
            "role chain: ARNs shown, external ids not",
            format!("s3://bkt?AUTH=implicit&ASSUME_ROLE={ROLE}%3Bexternal_id%3Dtenant-77%2C{ROLE}"),
            format!("s3://bkt?AUTH=implicit&ASSUME_ROLE={ROLE};external_id=redacted,{ROLE}"),
        ),
        (
            "userinfo password",
            "webhook-https://bob:hunter2@hooks.example.com".into(),
            "webhook-https://bob:redacted@hooks.example.com".into(),
        ),
        (
            "webhook path carries the hook's token",
            "webhook-https://hooks.example.com/services/T0/B0/XyZ?insecure_tls_skip_verify=false"
                .into(),
            "webhook-https://hooks.example.com/redacted?insecure_tls_skip_verify=false".into(),
        ),
        (
            "misspelt and unknown names: value and name replaced",
            "s3://bkt?AWS_SECRET_ACCES_KEY=abc&auth=implicit".into(),
            "s3://bkt?redacted=redacted&auth=implicit".into(),
        ),
        (
            "a raw '&' inside a secret",
            "kafka://k1?sasl_enabled=true&sasl_password=ab&cdefgh&more=x".into(),
            "kafka://k1?sasl_enabled=true&sasl_password=redacted&redacted&redacted=redacted".into(),
        ),
        (
            "a raw '?' cutting a password short",
            "webhook-https://bob:pa?ss@hooks.example.com/x".into(),
            "webhook-https://redacted?redacted".into(),
        ),
        (
            "URL parameter with credentials",
            "s3://bkt?AUTH=implicit&AWS_ENDPOINT=https%3A%2F%2Fu%3Apw%40minio".into(),
            "s3://bkt?AUTH=implicit&AWS_ENDPOINT=redacted".into(),
        ),
        (
            "no scheme at all",
            "mysecretvalue?CREDENTIALS=x".into(),
            "redacted?CREDENTIALS=redacted".into(),
        ),
        (
            "fragment, kafka brokers, non-ASCII",
            "kafka://k1:9092,k2:9093?topic_prefix=é#tail".into(),
            "kafka://k1:9092,k2:9093?topic_prefix=%C3%A9#redacted".into(),
        ),
    ];
    for (what, uri, want) in cases {
        assert_eq!(redact(&uri), want, "{what}");
    }
}

/// Characters secrets are drawn from: every printable ASCII one and some beyond.
fn secret_chars() -> Vec<char> {
    let mut v: Vec<char> = (0x21u8..=0x7e).map(char::from).collect();
    v.extend([' ', 'é', 'ß', '中', '\u{1F511}']);
    v
}

fn secret() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(secret_chars()), 16..40)
        .prop_map(|c| c.into_iter().collect())
}

/// External ids: AWS's character set, less ',' and ';' (the chain syntax's separators).
fn external_id() -> impl Strategy<Value = String> {
    let chars: Vec<char> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain("+=.@:/_-".chars())
        .collect();
    proptest::collection::vec(proptest::sample::select(chars), 16..40)
        .prop_map(|c| c.into_iter().collect())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A URI carrying secrets, and every form of them that must not come out.
#[derive(Debug)]
struct Case {
    uri: String,
    secrets: Vec<String>,
}

fn build(kind: u8, s: &[String], ext: &[String], mutation: u8, cut: usize) -> Case {
    let e = |i: usize| encode(&s[i]);
    let mut secrets: Vec<String> = Vec::new();
    let mut uri = match kind % 8 {
        0 => {
            secrets.extend([s[0].clone(), s[1].clone(), ext[0].clone(), ext[1].clone()]);
            format!(
                "s3://bkt/p?AUTH=specified&AWS_ACCESS_KEY_ID={AKID}&AWS_SECRET_ACCESS_KEY={}\
                 &AWS_SESSION_TOKEN={}&ASSUME_ROLE={}",
                e(0),
                e(1),
                encode(&format!(
                    "{ROLE};external_id={},{ROLE};external_id={}",
                    ext[0], ext[1]
                ))
            )
        }
        1 => {
            let json = format!(
                "{{\"type\":\"service_account\",\"private_key\":{}}}",
                serde_json_string(&s[0])
            );
            let creds = b64(&json);
            secrets.extend([s[0].clone(), creds.clone()]);
            format!("gs://bkt/p?AUTH=specified&CREDENTIALS={}", encode(&creds))
        }
        2 => {
            secrets.push(s[0].clone());
            format!("gs://bkt?BEARER_TOKEN={}", e(0))
        }
        3 => {
            let key = b64(&s[0]);
            secrets.extend([s[0].clone(), key.clone()]);
            format!(
                "azure-blob://cont/p?AZURE_ACCOUNT_NAME=acct1&AZURE_ACCOUNT_KEY={}",
                encode(&key)
            )
        }
        4 => {
            secrets.push(s[0].clone());
            format!(
                "azure-blob://cont?AZURE_ACCOUNT_NAME=acct1&AZURE_CLIENT_ID=0f0e0d0c-0b0a-0908-0706-050403020100\
                 &AZURE_CLIENT_SECRET={}&AZURE_TENANT_ID=contoso.example.com",
                e(0)
            )
        }
        5 => {
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                s[1]
            );
            let key = b64(&pem);
            let cert = b64("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
            secrets.extend([s[0].clone(), s[1].clone(), pem_b64_body(&key)]);
            format!(
                "kafka://k1:9092,k2?tls_enabled=true&client_cert={}&client_key={}&sasl_enabled=true\
                 &sasl_mechanism=SCRAM-SHA-256&sasl_user=cdc&sasl_password={}",
                encode(&cert),
                encode(&key),
                e(0)
            )
        }
        6 => {
            secrets.push(s[0].clone());
            format!(
                "kafka://k1?tls_enabled=true&sasl_enabled=true&sasl_mechanism=OAUTHBEARER\
                 &sasl_client_id=cdc&sasl_client_secret={}&sasl_token_url=https%3A%2F%2Fidp.example.com%2Ft",
                e(0)
            )
        }
        _ => {
            // The path token: characters a path can hold unencoded.
            let token: String = ext[0]
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                s[0]
            );
            let key = b64(&pem);
            let cert = b64("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
            secrets.extend([s[0].clone(), pem_b64_body(&key)]);
            if token.len() >= 10 {
                secrets.push(token.clone());
            }
            format!(
                "webhook-https://hooks.example.com/services/{token}?client_cert={}&client_key={}",
                encode(&cert),
                encode(&key)
            )
        }
    };
    match mutation % 10 {
        1 => uri.push_str(&format!("&X_UNKNOWN={}", e(2))),
        2 => uri.push_str(&format!("&AWS_SECRET_ACCES_KEY={}", e(2))),
        3 => uri.push_str("&AUTH=implicit"),
        4 => uri = uri.replacen("://", &format!("://user:{}@", e(2)), 1),
        5 => uri = uri.replacen("://", &format!("://user:{}@", s[2]), 1),
        6 => uri.push_str(&format!("&sasl_password={}", s[2])),
        7 => uri.push_str(&format!("#{}", s[2])),
        8 => {
            let at = uri
                .char_indices()
                .map(|(i, _)| i)
                .nth(cut % uri.chars().count())
                .unwrap_or(0);
            uri.truncate(at);
        }
        9 => uri = uri.replacen('&', "&&", 1),
        _ => {}
    }
    if matches!(mutation % 10, 1 | 2 | 4..=7) {
        secrets.push(s[2].clone());
    }
    Case { uri, secrets }
}

/// The part of a base64 PEM that encodes the secret body, not the BEGIN/END lines every PEM
/// shares (a certificate's base64 starts the same way).
fn pem_b64_body(b64: &str) -> String {
    b64[40..b64.len() - 40].to_string()
}

/// A JSON string literal for `s`.
fn serde_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every 10-character window of `secret`, raw and percent-encoded.
fn forms(secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    let mut out = Vec::new();
    for w in chars.windows(10) {
        let w: String = w.iter().collect();
        out.push(encode(&w));
        out.push(w);
    }
    let enc: Vec<char> = encode(secret).chars().collect();
    for w in enc.windows(10) {
        out.push(w.iter().collect());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_secret_survives(
        kind in 0u8..8,
        mutation in 0u8..10,
        cut in 0usize..4096,
        s in proptest::collection::vec(secret(), 3),
        ext in proptest::collection::vec(external_id(), 2),
    ) {
        let case = build(kind, &s, &ext, mutation, cut);
        let redacted = redact(&case.uri);
        prop_assert!(redacted.bytes().all(|b| (0x21..=0x7e).contains(&b)), "not printable: {redacted}");
        let parsed = parse(&case.uri);
        let shown = match &parsed {
            Ok(u) => format!("{u:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        if mutation == 0 {
            prop_assert!(parsed.is_ok(), "valid case refused: {shown} for {}", case.uri);
        }
        for secret in &case.secrets {
            for form in forms(secret) {
                prop_assert!(!redacted.contains(&form), "{form:?} of a secret in {redacted}");
                prop_assert!(!shown.contains(&form), "{form:?} of a secret in {shown}");
            }
        }
    }
}
