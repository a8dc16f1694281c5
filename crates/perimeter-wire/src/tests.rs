//! Each message against the exact JSON the two sides exchange.

use perimeter_policy::{IngressDoc, POLICY_FORMAT, TrafficPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::*;

/// `value` serialises to exactly `json`, and `json` reads back as `value`.
fn round_trip<T>(value: &T, json: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
{
    assert_eq!(serde_json::to_string(value).unwrap(), json);
    assert_eq!(&serde_json::from_str::<T>(json).unwrap(), value);
}

fn refused<T: DeserializeOwned + fmt::Debug>(json: &str) -> String {
    serde_json::from_str::<T>(json)
        .expect_err(&format!("{json} must be refused"))
        .to_string()
}

fn registration() -> GatewayRegistration {
    GatewayRegistration {
        id: "0b6c".into(),
        cluster_id: "c1".into(),
        name: "edge-1".into(),
        region: "us-east-1".into(),
    }
}

fn count(verdict: Verdict) -> DecisionCount {
    DecisionCount {
        destination: "api.example.com".into(),
        port: 443,
        verdict,
        rule_name: "api".into(),
        reason: "allowed_by_rule".into(),
        count: 3,
        bytes: 17,
        first_seen: "2026-11-23T10:00:00.000Z".into(),
        last_seen: "2026-11-23T10:01:00.000Z".into(),
    }
}

#[test]
fn paths() {
    assert_eq!(SNAPSHOT_PATH, "/api/v1/gateway/snapshot");
    assert_eq!(ACK_PATH, "/api/v1/gateway/ack");
    assert_eq!(DECISIONS_PATH, "/api/v1/gateway/decisions");
}

#[test]
fn snapshot_answer() {
    // The wait ended: no document.
    round_trip(
        &SnapshotResponse {
            version: 7,
            document: None,
            gateway: Some(registration()),
        },
        r#"{"version":7,"document":null,"gateway":{"id":"0b6c","cluster_id":"c1","name":"edge-1","region":"us-east-1"}}"#,
    );
    // A newer document.
    let doc = PolicyDocument {
        format: POLICY_FORMAT,
        version: 8,
        cluster_id: "c1".into(),
        traffic_policy: TrafficPolicy::DefaultDeny,
        rules: Vec::new(),
        private_endpoints: Vec::new(),
        ingress: IngressDoc::default(),
        tls_inspection: None,
    };
    round_trip(
        &SnapshotResponse {
            version: 8,
            document: Some(doc),
            gateway: Some(registration()),
        },
        r#"{"version":8,"document":{"format":1,"version":8,"cluster_id":"c1","traffic_policy":"DEFAULT_DENY","rules":[],"private_endpoints":[],"ingress":{"allowlist":[],"workloads":[],"public":true,"private_endpoints":[]}},"gateway":{"id":"0b6c","cluster_id":"c1","name":"edge-1","region":"us-east-1"}}"#,
    );
    // A control plane older than the registration does not send it.
    let old: SnapshotResponse = serde_json::from_str(r#"{"version":2,"document":null}"#).unwrap();
    assert_eq!(old.gateway, None);
    // The document itself refuses what it does not know.
    let e = refused::<SnapshotResponse>(
        r#"{"version":8,"document":{"format":1,"version":8,"cluster_id":"c1","traffic_policy":"DEFAULT_DENY","rules":[],"private_endpoints":[],"surprise":1},"gateway":null}"#,
    );
    assert!(e.contains("surprise"), "{e}");
}

#[test]
fn acknowledgement() {
    round_trip(
        &AckRequest {
            version: 3,
            applied: true,
            error: None,
            private_ingress_address: None,
        },
        r#"{"version":3,"applied":true,"error":null}"#,
    );
    round_trip(
        &AckRequest {
            version: 4,
            applied: false,
            error: Some("rule r1: bad destination".into()),
            private_ingress_address: Some("127.0.0.1:26258".into()),
        },
        r#"{"version":4,"applied":false,"error":"rule r1: bad destination","private_ingress_address":"127.0.0.1:26258"}"#,
    );
    // error and private_ingress_address may be left out; version and applied may not.
    let short: AckRequest = serde_json::from_str(r#"{"version":5,"applied":true}"#).unwrap();
    assert_eq!((short.error, short.private_ingress_address), (None, None));
    assert!(refused::<AckRequest>(r#"{"version":5}"#).contains("missing field `applied`"));
    let e = refused::<AckRequest>(r#"{"version":5,"applied":true,"extra":1}"#);
    assert!(e.contains("unknown field `extra`"), "{e}");
}

#[test]
fn verdicts() {
    for (v, s) in [
        (Verdict::Allowed, "ALLOWED"),
        (Verdict::Denied, "DENIED"),
        (Verdict::WouldDeny, "WOULD_DENY"),
    ] {
        assert_eq!(v.as_str(), s);
        assert_eq!(v.to_string(), s);
        assert_eq!(s.parse::<Verdict>(), Ok(v));
        round_trip(&v, &format!("\"{s}\""));
    }
    for bad in ["allowed", "MAYBE", "", "WouldDeny"] {
        assert_eq!(bad.parse::<Verdict>(), Err(UnknownVerdict), "{bad:?}");
        let e = refused::<Verdict>(&format!("\"{bad}\""));
        assert!(
            e.starts_with("verdict must be ALLOWED, DENIED or WOULD_DENY"),
            "{bad:?}: {e}"
        );
    }
    assert!(refused::<Verdict>("1").contains("invalid type"));
}

#[test]
fn decision_push() {
    let push = PushDecisionsRequest {
        decisions: vec![count(Verdict::Allowed), count(Verdict::WouldDeny)],
        endpoint_bytes: vec![EndpointBytes {
            endpoint_id: "vpce-1".into(),
            bytes: 42,
        }],
    };
    let one = |verdict: &str| {
        format!(
            r#"{{"destination":"api.example.com","port":443,"verdict":"{verdict}","rule_name":"api","reason":"allowed_by_rule","count":3,"bytes":17,"first_seen":"2026-11-23T10:00:00.000Z","last_seen":"2026-11-23T10:01:00.000Z"}}"#
        )
    };
    round_trip(
        &push,
        &format!(
            r#"{{"decisions":[{},{}],"endpoint_bytes":[{{"endpoint_id":"vpce-1","bytes":42}}]}}"#,
            one("ALLOWED"),
            one("WOULD_DENY")
        ),
    );
    // Nothing to say: both arrays, empty.
    round_trip(
        &PushDecisionsRequest {
            decisions: Vec::new(),
            endpoint_bytes: Vec::new(),
        },
        r#"{"decisions":[],"endpoint_bytes":[]}"#,
    );
}

#[test]
fn decision_push_defaults_and_nulls() {
    // null arrays read as empty; endpoint_bytes may be left out, decisions may not.
    let p: PushDecisionsRequest =
        serde_json::from_str(r#"{"decisions":null,"endpoint_bytes":null}"#).unwrap();
    assert!(p.decisions.is_empty() && p.endpoint_bytes.is_empty());
    let p: PushDecisionsRequest = serde_json::from_str(r#"{"decisions":[]}"#).unwrap();
    assert!(p.endpoint_bytes.is_empty());
    assert!(refused::<PushDecisionsRequest>("{}").contains("missing field `decisions`"));
    // rule_name and bytes default; the others are required.
    let c: DecisionCount = serde_json::from_str(
        r#"{"destination":"a.example.com","port":80,"verdict":"DENIED","reason":"no_rule_for_destination","count":1,"first_seen":"t0","last_seen":"t1"}"#,
    )
    .unwrap();
    assert_eq!((c.rule_name.as_str(), c.bytes), ("", 0));
    assert_eq!(c.verdict, Verdict::Denied);
    let e = refused::<DecisionCount>(
        r#"{"destination":"a.example.com","port":80,"verdict":"DENIED","count":1,"first_seen":"t0","last_seen":"t1"}"#,
    );
    assert!(e.contains("missing field `reason`"), "{e}");
}

#[test]
fn decision_push_refuses_unknown_fields() {
    for (json, field) in [
        (r#"{"decisions":[],"more":1}"#, "more"),
        (
            r#"{"decisions":[{"destination":"a","port":1,"verdict":"DENIED","reason":"r","count":1,"first_seen":"t","last_seen":"t","sni":"x"}]}"#,
            "sni",
        ),
        (
            r#"{"decisions":[],"endpoint_bytes":[{"endpoint_id":"vpce-1","bytes":1,"up":1}]}"#,
            "up",
        ),
    ] {
        let e = refused::<PushDecisionsRequest>(json);
        assert!(
            e.contains(&format!("unknown field `{field}`")),
            "{json}: {e}"
        );
    }
    let e = refused::<PushDecisionsRequest>(
        r#"{"decisions":[{"destination":"a","port":1,"verdict":"MAYBE","reason":"r","count":1,"first_seen":"t","last_seen":"t"}]}"#,
    );
    assert!(
        e.contains("verdict must be ALLOWED, DENIED or WOULD_DENY"),
        "{e}"
    );
}

#[test]
fn registration_is_open_to_additions() {
    // Neither side refuses a registration field it does not know (it is also kept on disk).
    let r: GatewayRegistration = serde_json::from_str(
        r#"{"id":"0b6c","cluster_id":"c1","name":"edge-1","region":"us-east-1","zone":"a"}"#,
    )
    .unwrap();
    assert_eq!(r, registration());
}

#[test]
fn null_as_empty_reads_null_and_arrays() {
    #[derive(Debug, Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "null_as_empty")]
        v: Vec<u8>,
    }
    let h: Holder = serde_json::from_str(r#"{"v":null}"#).unwrap();
    assert!(h.v.is_empty());
    let h: Holder = serde_json::from_str(r#"{"v":[1,2]}"#).unwrap();
    assert_eq!(h.v, [1, 2]);
    assert!(serde_json::from_str::<Holder>("{}").is_err());
}
