use super::*;
use crate::RuleType;
use crate::decide::tests::{document, endpoint, rule};
use crate::document::{BackendDoc, EndpointDoc};

fn compile_err(doc: &PolicyDocument) -> CompileError {
    match compile(doc) {
        Ok(snapshot) => panic!("compiled: {snapshot:?}"),
        Err(e) => e,
    }
}

#[test]
fn compile_errors_name_the_rule_and_field() {
    let good = || rule("ok", "api.example.com", &[443], &[]);
    let mut cidr_with_paths = rule("r-cidr", "10.0.0.0/8", &[443], &[]);
    cidr_with_paths.paths = vec!["/v1/*".to_owned()];
    let mut fqdn_typed_cidr = rule("r-type", "10.0.0.0/8", &[443], &[]);
    fqdn_typed_cidr.rule_type = RuleType::Fqdn;
    let cases: Vec<(&str, RuleDoc, &str, &str, &str)> = vec![
        (
            "bad hostname",
            rule("r-bad", "exa mple.com", &[443], &[]),
            "r-bad",
            "rules[1].destination",
            "not allowed in a hostname",
        ),
        (
            "wildcard over public suffix",
            rule("r-psl", "*.co.uk", &[443], &[]),
            "r-psl",
            "rules[1].destination",
            "public suffix",
        ),
        (
            "host bits",
            rule("r-bits", "10.0.0.1/8", &[443], &[]),
            "r-bits",
            "rules[1].destination",
            "use 10.0.0.0/8",
        ),
        (
            "port zero",
            rule("r-port", "api.example.com", &[443, 0], &[]),
            "r-port",
            "rules[1].ports[1]",
            "out of range",
        ),
        (
            "bad path",
            rule("r-path", "api.example.com", &[443], &["/a/*/b"]),
            "r-path",
            "rules[1].paths[0]",
            "'*'",
        ),
        (
            "cidr with paths",
            cidr_with_paths,
            "r-cidr",
            "rules[1].paths",
            "CIDR rules carry no paths",
        ),
        (
            "fqdn typed cidr",
            fqdn_typed_cidr,
            "r-type",
            "rules[1].destination",
            "use type CIDR",
        ),
        (
            "empty id",
            rule("", "api.example.com", &[443], &[]),
            "",
            "rules[1].id",
            "empty",
        ),
        (
            "duplicate id",
            rule("ok", "www.example.com", &[443], &[]),
            "ok",
            "rules[1].id",
            "more than once",
        ),
    ];
    for (name, bad, id, field, message) in cases {
        let doc = document(TrafficPolicy::DefaultDeny, vec![good(), bad], Vec::new());
        let err = compile_err(&doc);
        assert_eq!(err.rule_id.as_deref(), Some(id), "{name}: {err}");
        assert_eq!(err.field, field, "{name}: {err}");
        assert!(err.message.contains(message), "{name}: {err}");
        assert!(err.to_string().contains(field), "{name}: {err}");
    }
}

#[test]
fn compile_errors_of_endpoints_and_document() {
    let mut doc = document(TrafficPolicy::DefaultDeny, Vec::new(), Vec::new());
    doc.format = 2;
    let err = compile_err(&doc);
    assert_eq!((err.rule_id, err.field.as_str()), (None, "format"));

    let cases: Vec<(&str, Vec<EndpointDoc>, &str, &str, &str)> = vec![
        (
            "bad domain",
            vec![endpoint("pe-1", "", &["ok.example.com", "*.com"])],
            "pe-1",
            "private_endpoints[0].domain_names[1]",
            "public suffix",
        ),
        (
            "bad address",
            vec![endpoint("pe-1", "not a name", &[])],
            "pe-1",
            "private_endpoints[0].endpoint_address",
            "not allowed",
        ),
        (
            "name claimed twice",
            vec![
                endpoint("pe-1", "", &["*.kafka.example.com"]),
                endpoint("pe-2", "", &["*.Kafka.example.com."]),
            ],
            "pe-2",
            "private_endpoints[1].domain_names[0]",
            "already routed to private endpoint \"pe-1\"",
        ),
        (
            "address claimed by a domain",
            vec![
                endpoint("pe-1", "", &["a.example.com"]),
                endpoint("pe-2", "a.example.com", &[]),
            ],
            "pe-2",
            "private_endpoints[1].endpoint_address",
            "already routed",
        ),
        (
            "duplicate id",
            vec![endpoint("pe-1", "", &[]), endpoint("pe-1", "", &[])],
            "pe-1",
            "private_endpoints[1].id",
            "more than once",
        ),
        (
            "bad backend",
            vec![EndpointDoc {
                backends: vec![BackendDoc::plain("10.0.0.1")],
                ..endpoint("pe-1", "", &[])
            }],
            "pe-1",
            "private_endpoints[0].backends[0]",
            "host:port",
        ),
    ];
    for (name, endpoints, id, field, message) in cases {
        let doc = document(TrafficPolicy::DefaultDeny, Vec::new(), endpoints);
        let err = compile_err(&doc);
        assert_eq!(err.rule_id.as_deref(), Some(id), "{name}: {err}");
        assert_eq!(err.field, field, "{name}: {err}");
        assert!(err.message.contains(message), "{name}: {err}");
    }
    // The same endpoint may name a name twice, exactly and as a wildcard.
    let doc = document(
        TrafficPolicy::DefaultDeny,
        Vec::new(),
        vec![endpoint(
            "pe-1",
            "a.example.com",
            &["a.example.com", "*.a.example.com", "*.a.example.com"],
        )],
    );
    assert!(compile(&doc).is_ok());
}

#[test]
fn wire_format_is_plain_json() {
    let doc = document(
        TrafficPolicy::ReportOnly,
        vec![rule("r-1", "*.example.com", &[443], &["/v1/*"])],
        vec![endpoint("pe-1", "pe.example.com", &["*.kafka.example.com"])],
    );
    let json = serde_json::to_value(&doc).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "format": 1,
            "version": 7,
            "cluster_id": "cluster-1",
            "traffic_policy": "REPORT_ONLY",
            "rules": [{
                "id": "r-1",
                "name": "name of r-1",
                "rule_type": "FQDN",
                "destination": "*.example.com",
                "ports": [443],
                "paths": ["/v1/*"],
                "crl_managed": false,
            }],
            "private_endpoints": [{
                "id": "pe-1",
                "region": "us-east-1",
                "connection_id": "pe-1-connection",
                "endpoint_address": "pe.example.com",
                "domain_names": ["*.kafka.example.com"],
                "backends": ["10.9.9.9:9092"],
                "ports": [],
                "proxy_protocol": false,
            }],
            "ingress": {"allowlist": [], "workloads": [], "public": true, "private_endpoints": []},
        })
    );
    let back: PolicyDocument = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, doc);
    // A document from before the ingress side carried none: it reads as an empty allowlist.
    let mut older = json.clone();
    older.as_object_mut().unwrap().remove("ingress");
    let back: PolicyDocument = serde_json::from_value(older).unwrap();
    assert_eq!(back, doc);
    let mut unknown_ingress = json.clone();
    unknown_ingress["ingress"]["allowlist"] =
        serde_json::json!([{"cidr": "10.0.0.0/8", "sql": true, "ui": false, "tls": true}]);
    assert!(serde_json::from_value::<PolicyDocument>(unknown_ingress).is_err());

    for policy in ["ALLOW_ALL", "DEFAULT_DENY", "REPORT_ONLY"] {
        let mut json = json.clone();
        json["traffic_policy"] = policy.into();
        let doc: PolicyDocument = serde_json::from_value(json).unwrap();
        assert_eq!(doc.traffic_policy.as_str(), policy);
    }
    let mut unknown_policy = json.clone();
    unknown_policy["traffic_policy"] = "allow_all".into();
    let err = serde_json::from_value::<PolicyDocument>(unknown_policy).unwrap_err();
    assert!(err.to_string().contains("not known"), "{err}");
    let mut unknown_field = json.clone();
    unknown_field["rules"][0]["deny"] = true.into();
    assert!(serde_json::from_value::<PolicyDocument>(unknown_field).is_err());
    let mut bad_port = json;
    bad_port["rules"][0]["ports"] = serde_json::json!([70000]);
    assert!(serde_json::from_value::<PolicyDocument>(bad_port).is_err());
}

#[test]
fn port_set() {
    let mut set = PortSet::new();
    assert!(!set.contains(443));
    set.insert_all(&[1, 443, 65535]);
    assert!(set.contains(1) && set.contains(443) && set.contains(65535));
    assert!(!set.contains(0) && !set.contains(444) && !set.contains(65534));
    set.insert_all(&[]);
    assert!(set.contains(8080));
}

#[test]
fn rule_ports_inline_and_many() {
    // Inline up to INLINE_PORTS (the spare lanes repeat a port), then sorted out of line.
    for n in [1, 2, INLINE_PORTS - 1, INLINE_PORTS, INLINE_PORTS + 1, 100] {
        let ports: Vec<u16> = (0..n).map(|i| 1000 + 3 * i as u16).collect();
        let meta = RuleMeta {
            id: "r".into(),
            name: "n".into(),
        };
        let rule = CompiledRule::new(ports.clone(), Vec::new(), false, meta);
        assert_eq!(rule.ports(), ports.as_slice(), "{n} ports");
        for port in 990..1000 + 3 * n as u16 + 3 {
            assert_eq!(
                rule.allows_port(port),
                ports.contains(&port),
                "{n} ports, {port}"
            );
        }
        assert!(!rule.allows_port(0), "{n} ports: port 0 is no rule's");
        assert!(rule.paths().is_empty() && !rule.operator());
    }
    let meta = RuleMeta {
        id: "r".into(),
        name: "n".into(),
    };
    let paths = vec!["/v1/*".parse().unwrap()];
    let all = CompiledRule::new(Vec::new(), paths, true, meta);
    assert!(all.ports().is_empty());
    assert!(all.allows_port(0) && all.allows_port(1) && all.allows_port(65535));
    assert_eq!(all.paths().len(), 1);
    assert!(all.operator());
}

#[test]
fn rules_keep_operator_rules_first_then_document_order() {
    let doc = document(
        TrafficPolicy::DefaultDeny,
        vec![
            rule("r0", "api.example.com", &[80], &[]),
            rule("r1", "api.example.com", &[443], &[]),
            rule("r2", "api.example.com", &[443], &[]),
            rule("r3", "api.example.com", &[8443], &[]),
        ],
        vec![],
    );
    let snapshot = compile(&doc).unwrap();
    assert_eq!(snapshot.rule_count(), 4);
    let name: Hostname = "api.example.com".parse().unwrap();
    let check = |port| {
        let got = snapshot.check(crate::Destination::Name(&name), port, None);
        got.rule().map(|r| r.id.to_string())
    };
    assert_eq!(check(80).as_deref(), Some("r0"));
    assert_eq!(check(443).as_deref(), Some("r1"), "first in document order");
    assert_eq!(check(8443).as_deref(), Some("r3"));
    assert_eq!(check(22), None);
}

#[test]
fn rule_lists_are_small() {
    use std::mem::size_of;
    // A rule list (its first rule's head inline) leaves 95 bytes of a 128-byte name record
    // for the key, 31 of them in the record's first cache line.
    assert_eq!(size_of::<RuleHead>(), 16);
    assert_eq!(size_of::<RuleSlot>(), 24);
    assert_eq!(size_of::<Rules>(), 32);
    assert_eq!(size_of::<crate::RuleRef>(), 16);
    assert_eq!(size_of::<Option<crate::RuleRef>>(), 16);
}

#[test]
fn path_arena_matches_as_path_patterns_do() {
    let sets: Vec<Vec<PathPattern>> = [
        &["/v1/*", "/health"][..],
        &["/"],
        &["/*"],
        &["/a/b/*", "/a/b", "/a/bc", "/x;p/*"],
    ]
    .iter()
    .map(|set| set.iter().map(|p| p.parse().unwrap()).collect())
    .collect();
    let mut bytes = Vec::new();
    let offsets: Vec<u32> = sets
        .iter()
        .map(|set| PathArena::encode(&mut bytes, set))
        .collect();
    let arena = PathArena {
        bytes: bytes.into_boxed_slice(),
    };
    let paths = [
        "/", "/v1", "/v1/", "/v1/a/b", "/health", "/health/", "/healthz", "/a/b", "/a/b/",
        "/a/b/c", "/a/bc", "/a/bcd", "/x;p/y", "/x", "",
    ];
    for (set, &at) in sets.iter().zip(&offsets) {
        for path in paths {
            assert_eq!(
                arena.any_matches(at, path),
                set.iter().any(|p| p.matches(path)),
                "{set:?} {path:?}"
            );
        }
    }
    // No patterns where a slot points past the arena, or nowhere: nothing matches.
    assert!(!arena.any_matches(NO_PATHS, "/"));
    assert!(!arena.any_matches(u32::try_from(arena.bytes.len()).unwrap(), "/"));
}

#[test]
fn endpoint_backends_by_port_and_server_name() {
    let brokers = EndpointDoc {
        backends: vec![
            BackendDoc {
                address: "10.0.0.1:9092".to_owned(),
                server_names: vec!["b-1.kafka.example".to_owned()],
            },
            BackendDoc {
                address: "10.0.0.2:9092".to_owned(),
                server_names: vec!["*.kafka.example".to_owned()],
            },
            BackendDoc::plain("[2001:db8::1]:8080"),
            BackendDoc::plain("backend.example:8080"),
        ],
        ..endpoint("pe-1", "pe.example.com", &[])
    };
    let snap = compile(&document(TrafficPolicy::DefaultDeny, vec![], vec![brokers])).unwrap();
    let pe = snap.endpoint("pe-1").unwrap();
    let on = |port| {
        pe.backends_on(port)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(on(9092), ["10.0.0.1:9092", "10.0.0.2:9092"]);
    assert_eq!(on(8080), ["[2001:db8::1]:8080", "backend.example:8080"]);
    assert!(on(443).is_empty());
    assert!(pe.routes_by_sni(9092));
    assert!(!pe.routes_by_sni(8080));
    let sni = |name: &str| {
        pe.backend_for_sni(9092, &name.parse().unwrap())
            .map(ToString::to_string)
    };
    // The exact name wins over the wildcard that also matches it.
    assert_eq!(sni("b-1.kafka.example").as_deref(), Some("10.0.0.1:9092"));
    assert_eq!(sni("b-2.kafka.example").as_deref(), Some("10.0.0.2:9092"));
    assert_eq!(sni("kafka.example"), None);
    assert_eq!(sni("b-1.other.example"), None);

    // Exposed ports (an MSK broker port) reach every backend, whatever its own port.
    let msk = EndpointDoc {
        ports: vec![9096],
        ..endpoint("pe-2", "msk.example.com", &[])
    };
    let snap = compile(&document(TrafficPolicy::DefaultDeny, vec![], vec![msk])).unwrap();
    let pe = snap.endpoint("pe-2").unwrap();
    assert_eq!(pe.backends_on(9096).count(), 1);
    assert_eq!(pe.backends_on(9092).count(), 0);
}

#[test]
fn endpoint_backend_errors_name_the_field() {
    for (backend, field) in [
        (
            BackendDoc::plain("10.0.0.1:0"),
            "private_endpoints[0].backends[0]",
        ),
        (
            BackendDoc::plain("[::1:80"),
            "private_endpoints[0].backends[0]",
        ),
        (
            BackendDoc::plain("bad_name!:80"),
            "private_endpoints[0].backends[0]",
        ),
        (
            BackendDoc {
                address: "10.0.0.1:80".to_owned(),
                server_names: vec!["*.*.example".to_owned()],
            },
            "private_endpoints[0].backends[0].server_names[0]",
        ),
    ] {
        let doc = EndpointDoc {
            backends: vec![backend.clone()],
            ..endpoint("pe-1", "", &[])
        };
        let e = compile(&document(TrafficPolicy::DefaultDeny, vec![], vec![doc]))
            .err()
            .unwrap_or_else(|| panic!("{backend:?} compiled"));
        assert_eq!(e.field, field, "{backend:?}");
    }
}

#[test]
fn backends_read_either_form_and_name_a_wrong_key() {
    let plain: BackendDoc = serde_json::from_str(r#""10.0.0.1:9092""#).unwrap();
    assert_eq!(plain, BackendDoc::plain("10.0.0.1:9092"));
    let named: BackendDoc =
        serde_json::from_str(r#"{"address": "10.0.0.1:9092", "server_names": ["b-1.k.example"]}"#)
            .unwrap();
    assert_eq!(named.server_names, ["b-1.k.example"]);
    assert_eq!(
        serde_json::to_value(&named).unwrap(),
        serde_json::json!({"address": "10.0.0.1:9092", "server_names": ["b-1.k.example"]})
    );
    assert_eq!(
        serde_json::to_value(&plain).unwrap(),
        serde_json::json!("10.0.0.1:9092")
    );
    let e = serde_json::from_str::<BackendDoc>(r#"{"adress": "10.0.0.1:9092"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("adress") && e.contains("address"), "{e}");
    let e = serde_json::from_str::<BackendDoc>("7")
        .unwrap_err()
        .to_string();
    assert!(e.contains("host:port"), "{e}");
}

#[test]
fn backends_written_by_earlier_registrations_still_compile() {
    for (address, shown) in [
        ("::1:9092", "[::1]:9092"),
        ("[127.0.0.1]:80", "127.0.0.1:80"),
    ] {
        let doc = EndpointDoc {
            backends: vec![BackendDoc::plain(address)],
            ..endpoint("pe-1", "", &[])
        };
        let snap = compile(&document(TrafficPolicy::DefaultDeny, vec![], vec![doc])).unwrap();
        let b = snap.endpoint("pe-1").unwrap().backends()[0].to_string();
        assert_eq!(b, shown);
    }
}

#[test]
fn tls_inspection_compiles_with_its_never_inspect_patterns_checked() {
    let mut doc = crate::decide::tests::document(TrafficPolicy::DefaultDeny, vec![], vec![]);
    assert!(compile(&doc).unwrap().inspection().is_none());
    let pem = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n";
    doc.tls_inspection = Some(crate::TlsInspectionDoc {
        ca_certificate: pem.into(),
        ca_key: key.into(),
        never_inspect: vec!["pinned.example.com".into(), "*.bank.example".into()],
    });
    let snap = compile(&doc).unwrap();
    let inspection = snap.inspection().expect("on");
    assert!(inspection.never_inspects(&"pinned.example.com".parse().unwrap()));
    assert!(inspection.never_inspects(&"www.bank.example".parse().unwrap()));
    assert!(!inspection.never_inspects(&"storage.example.com".parse().unwrap()));
    assert!(!format!("{inspection:?}").contains("PRIVATE KEY"));
    for (field, mutate) in [
        ("tls_inspection.never_inspect[1]", 0),
        ("tls_inspection.ca_key", 1),
        ("tls_inspection.ca_certificate", 2),
    ] {
        let mut bad = doc.clone();
        let t = bad.tls_inspection.as_mut().unwrap();
        match mutate {
            0 => t.never_inspect[1] = "*".into(),
            1 => t.ca_key = "not a key".into(),
            _ => t.ca_certificate = "not a certificate".into(),
        }
        let e = compile(&bad).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}
