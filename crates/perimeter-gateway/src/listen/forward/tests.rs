use super::*;

#[test]
fn hop_by_hop_stripping_never_removes_the_host() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("allowed.test"));
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("Host, keep-alive, x-drop"),
    );
    h.insert("x-drop", HeaderValue::from_static("1"));
    h.insert("x-keep", HeaderValue::from_static("1"));
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    strip_hop_by_hop(&mut h);
    assert_eq!(h.get(header::HOST).unwrap(), "allowed.test");
    assert!(h.get("x-drop").is_none());
    assert!(h.get(header::TE).is_none());
    assert!(h.get(header::CONNECTION).is_none());
    assert_eq!(h.get("x-keep").unwrap(), "1");
}

#[test]
fn double_encoding_is_found_and_only_matters_under_path_rules() {
    for (path, want) in [
        ("/api/%252F..%252Fsecret", true),
        ("/api/%252e%252e/secret", true),
        ("/100%25", false),
        ("/100%25off", false),
        ("/a%2Fb", false),
        ("/plain", false),
    ] {
        assert_eq!(double_encoded(path), want, "{path}");
    }
    use perimeter_policy::{POLICY_FORMAT, PolicyDocument, RuleDoc, RuleType, TrafficPolicy};
    let rule = |name: &str, dest: &str, paths: Vec<String>| RuleDoc {
        id: name.into(),
        name: name.into(),
        rule_type: RuleType::Fqdn,
        destination: dest.into(),
        ports: vec![80],
        paths,
        crl_managed: false,
    };
    let snap = perimeter_policy::compile(&PolicyDocument {
        format: POLICY_FORMAT,
        version: 1,
        cluster_id: "c-1".into(),
        traffic_policy: TrafficPolicy::DefaultDeny,
        rules: vec![
            rule("api", "paths.example.com", vec!["/api/*".into()]),
            rule("whole", "whole.example.com", vec![]),
        ],
        ingress: Default::default(),
        private_endpoints: vec![],
        tls_inspection: None,
    })
    .unwrap();
    let t = |s: &str| Target::parse_authority(s, Some(80)).unwrap();
    assert!(governed_by_path_rules(&snap, &t("paths.example.com:80")));
    assert!(!governed_by_path_rules(&snap, &t("whole.example.com:80")));
    assert!(!governed_by_path_rules(&snap, &t("other.example.com:80")));
}

#[test]
fn a_missing_host_names_the_target() {
    let t = |s: &str| Target::parse_authority(s, Some(80)).unwrap();
    assert_eq!(host_value(&t("a.example:80")), "a.example");
    assert_eq!(host_value(&t("a.example:8080")), "a.example:8080");
    assert_eq!(host_value(&t("[2001:db8::1]:80")), "[2001:db8::1]");
}
