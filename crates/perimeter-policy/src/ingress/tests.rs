use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::{BackendHost, POLICY_FORMAT, PolicyDocument, TrafficPolicy, WorkloadDoc};

fn entry(cidr: &str, sql: bool, ui: bool) -> AllowlistDoc {
    AllowlistDoc {
        cidr: cidr.to_owned(),
        name: format!("n-{cidr}"),
        sql,
        ui,
    }
}

fn snapshot(allowlist: Vec<AllowlistDoc>, workloads: Vec<WorkloadDoc>) -> crate::Snapshot {
    crate::compile(&PolicyDocument {
        format: POLICY_FORMAT,
        version: 3,
        cluster_id: "c".into(),
        traffic_policy: TrafficPolicy::DefaultDeny,
        tls_inspection: None,
        rules: Vec::new(),
        private_endpoints: Vec::new(),
        ingress: IngressDoc {
            allowlist,
            workloads,
            ..Default::default()
        },
    })
    .expect("compiles")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn empty_allowlist_admits_no_one() {
    let s = snapshot(vec![], vec![]);
    for l in IngressListener::ALL {
        let d = s.admit_ingress(ip("127.0.0.2"), l);
        assert!(!d.admitted);
        assert_eq!(d.reason, IngressReason::AllowlistEmpty);
        assert_eq!(d.entry, None);
    }
}

#[test]
fn no_snapshot_admits_no_one() {
    let d = crate::Snapshot::empty_deny().admit_ingress(ip("127.0.0.2"), IngressListener::Sql);
    assert_eq!(d, IngressDecision::refused(IngressReason::NoSnapshot));
}

#[test]
fn flags_are_enforced_per_listener() {
    let s = snapshot(vec![entry("127.0.0.2/32", true, false)], vec![]);
    let d = s.admit_ingress(ip("127.0.0.2"), IngressListener::Sql);
    assert!(d.admitted);
    assert_eq!(d.reason, IngressReason::Allowlisted);
    assert_eq!(
        d.entry.as_ref().map(|e| e.cidr().to_string()),
        Some("127.0.0.2/32".into())
    );
    assert_eq!(d.entry.as_ref().map(|e| e.name()), Some("n-127.0.0.2/32"));
    let d = s.admit_ingress(ip("127.0.0.2"), IngressListener::Ui);
    assert!(!d.admitted);
    assert_eq!(d.reason, IngressReason::ListenerNotAllowed);
    assert_eq!(
        d.entry.map(|e| e.cidr().to_string()),
        Some("127.0.0.2/32".into())
    );
    let d = s.admit_ingress(ip("127.0.0.3"), IngressListener::Sql);
    assert!(!d.admitted);
    assert_eq!(d.reason, IngressReason::NotAllowlisted);
}

#[test]
fn the_most_specific_admitting_entry_decides() {
    let s = snapshot(
        vec![
            entry("10.0.0.0/8", true, true),
            entry("10.1.0.0/16", true, false),
            entry("10.1.2.0/24", false, false),
        ],
        vec![],
    );
    let d = s.admit_ingress(ip("10.1.2.3"), IngressListener::Sql);
    assert!(d.admitted);
    assert_eq!(d.entry.unwrap().cidr().to_string(), "10.1.0.0/16");
    let d = s.admit_ingress(ip("10.1.2.3"), IngressListener::Ui);
    assert!(d.admitted);
    assert_eq!(d.entry.unwrap().cidr().to_string(), "10.0.0.0/8");
    // A narrower entry without the flag does not take away what a wider one grants.
    let s = snapshot(vec![entry("10.1.2.0/24", false, false)], vec![]);
    let d = s.admit_ingress(ip("10.1.2.3"), IngressListener::Ui);
    assert_eq!(d.reason, IngressReason::ListenerNotAllowed);
    assert_eq!(d.entry.unwrap().cidr().to_string(), "10.1.2.0/24");
}

#[test]
fn ipv4_mapped_sources_are_judged_as_ipv4_and_nothing_else_is() {
    let s = snapshot(vec![entry("127.0.0.0/24", true, true)], vec![]);
    let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped());
    assert!(s.admit_ingress(mapped, IngressListener::Sql).admitted);
    // IPv4-compatible, NAT64 and 6to4 forms are other hosts.
    for other in ["::127.0.0.2", "64:ff9b::7f00:2", "2002:7f00:2::1"] {
        let d = s.admit_ingress(ip(other), IngressListener::Sql);
        assert_eq!(d.reason, IngressReason::NotAllowlisted, "{other}");
    }
    let s = snapshot(vec![entry("::ffff:0:0/96", true, true)], vec![]);
    // An IPv4 source is not matched by an IPv6 prefix that spells the mapped range.
    assert!(
        !s.admit_ingress(ip("127.0.0.2"), IngressListener::Sql)
            .admitted
    );
}

#[test]
fn ipv6_entries_admit_ipv6_sources() {
    let s = snapshot(vec![entry("2001:db8::/32", false, true)], vec![]);
    assert!(
        s.admit_ingress(ip("2001:db8::5"), IngressListener::Ui)
            .admitted
    );
    assert!(
        !s.admit_ingress(ip("2001:db9::5"), IngressListener::Ui)
            .admitted
    );
}

#[test]
fn bad_documents_are_refused_with_the_field() {
    let compile = |allowlist, workloads| {
        crate::compile(&PolicyDocument {
            format: POLICY_FORMAT,
            version: 1,
            cluster_id: "c".into(),
            traffic_policy: TrafficPolicy::DefaultDeny,
            tls_inspection: None,
            rules: Vec::new(),
            private_endpoints: Vec::new(),
            ingress: IngressDoc {
                allowlist,
                workloads,
                ..Default::default()
            },
        })
    };
    let e = compile(vec![entry("10.0.0.1/8", true, true)], vec![]).unwrap_err();
    assert_eq!(e.field, "ingress.allowlist[0].cidr");
    let e = compile(
        vec![
            entry("10.0.0.0/8", true, true),
            entry("10.0.0.0/8", false, true),
        ],
        vec![],
    )
    .unwrap_err();
    assert_eq!(e.field, "ingress.allowlist");
    let w = |region: &str, sql: &str| WorkloadDoc {
        region: region.into(),
        sql: sql.into(),
        ui: String::new(),
    };
    let e = compile(vec![], vec![w("us-east-1", "127.0.0.1")]).unwrap_err();
    assert_eq!(e.field, "ingress.workloads[0].sql");
    let e = compile(vec![], vec![w("a", "127.0.0.1:1"), w("a", "127.0.0.1:2")]).unwrap_err();
    assert_eq!(e.field, "ingress.workloads[1].region");
}

fn private_snapshot(public: bool, private_endpoints: &[&str]) -> crate::Snapshot {
    crate::compile(&PolicyDocument {
        format: POLICY_FORMAT,
        version: 4,
        cluster_id: "c".into(),
        traffic_policy: TrafficPolicy::DefaultDeny,
        tls_inspection: None,
        rules: Vec::new(),
        private_endpoints: Vec::new(),
        ingress: IngressDoc {
            allowlist: vec![entry("0.0.0.0/0", true, true)],
            public,
            private_endpoints: private_endpoints.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    })
    .expect("compiles")
}

#[test]
fn private_visibility_closes_the_public_side_whatever_the_allowlist() {
    let open = private_snapshot(true, &[]);
    assert!(
        open.admit_ingress(ip("127.0.0.2"), IngressListener::Sql)
            .admitted
    );
    let closed = private_snapshot(false, &[]);
    for l in IngressListener::ALL {
        let d = closed.admit_ingress(ip("127.0.0.2"), l);
        assert_eq!(d, IngressDecision::refused(IngressReason::PublicClosed));
    }
}

#[test]
fn the_private_listener_admits_only_admitted_endpoint_ids() {
    let s = private_snapshot(false, &["vpce-0b", "vpce-0a"]);
    for id in ["vpce-0a", "vpce-0b"] {
        let d = s.admit_private_ingress(Some(id));
        assert!(d.admitted, "{id}");
        assert_eq!(d.reason, IngressReason::PrivateEndpoint);
    }
    for (id, reason) in [
        (Some("vpce-0c"), IngressReason::UnknownEndpoint),
        (Some("VPCE-0A"), IngressReason::UnknownEndpoint),
        (Some("vpce-0"), IngressReason::UnknownEndpoint),
        (Some(""), IngressReason::NoEndpointId),
        (None, IngressReason::NoEndpointId),
    ] {
        assert_eq!(
            s.admit_private_ingress(id),
            IngressDecision::refused(reason)
        );
    }
    // The allowlist does not open the private listener, and no snapshot admits no one.
    assert_eq!(
        s.admit_ingress(ip("127.0.0.2"), IngressListener::Private),
        IngressDecision::refused(IngressReason::WrongListener)
    );
    assert_eq!(
        crate::Snapshot::empty_deny().admit_private_ingress(Some("vpce-0a")),
        IngressDecision::refused(IngressReason::NoSnapshot)
    );
}

#[test]
fn private_endpoint_ids_are_checked_when_compiled() {
    let doc = |id: &str| PolicyDocument {
        format: POLICY_FORMAT,
        version: 1,
        cluster_id: "c".into(),
        traffic_policy: TrafficPolicy::DefaultDeny,
        tls_inspection: None,
        rules: Vec::new(),
        private_endpoints: Vec::new(),
        ingress: IngressDoc {
            private_endpoints: vec!["vpce-1".into(), id.into()],
            ..Default::default()
        },
    };
    for bad in ["", "vpce 1", "vpce-\n", &"x".repeat(129)] {
        let e = crate::compile(&doc(bad)).unwrap_err();
        assert_eq!(e.field, "ingress.private_endpoints[1]", "{bad:?}");
    }
    assert!(crate::compile(&doc("pe-0123456789abcdef0")).is_ok());
}

#[test]
fn a_document_without_the_new_fields_is_public_and_admits_no_endpoint() {
    let d: IngressDoc = serde_json::from_str(r#"{"allowlist": [], "workloads": []}"#).unwrap();
    assert!(d.public);
    assert!(d.private_endpoints.is_empty());
}

#[test]
fn workload_addresses_by_region() {
    let s = snapshot(
        vec![],
        vec![WorkloadDoc {
            region: "us-east-1".into(),
            sql: "127.0.0.1:26257".into(),
            ui: String::new(),
        }],
    );
    let w = s.ingress().workload("us-east-1").unwrap();
    let sql = w.address(IngressListener::Sql).unwrap();
    assert_eq!(sql.host(), &BackendHost::Ip(ip("127.0.0.1")));
    assert_eq!(sql.port(), 26257);
    assert_eq!(sql.to_string(), "127.0.0.1:26257");
    assert_eq!(w.address(IngressListener::Ui), None);
    assert!(s.ingress().workload("eu-west-1").is_none());
}

fn arb_entry() -> impl Strategy<Value = (IpNet, bool, bool)> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| IpNet::V4(
            ipnet::Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()
        )),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| IpNet::V6(
            ipnet::Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()
        )),
    ]
    .prop_flat_map(|net| (Just(net), any::<bool>(), any::<bool>()))
}

fn arb_source() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        any::<u32>().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
    ]
}

proptest! {
    /// The compiled check agrees with the definition: admitted exactly when some entry with the
    /// listener's flag contains the (IPv4-mapped-normalised) source, and the deciding entry
    /// contains the source.
    #[test]
    fn admission_matches_the_definition(
        raw in proptest::collection::vec(arb_entry(), 0..12),
        // Sources near an entry are more interesting than random ones.
        near in proptest::collection::vec((0usize..12, any::<u128>()), 0..4),
        random in arb_source(),
        ui in any::<bool>(),
    ) {
        let mut docs = Vec::new();
        let mut nets = Vec::new();
        for (net, sql, ui) in raw {
            if nets.iter().any(|(n, _, _)| *n == net) {
                continue;
            }
            nets.push((net, sql, ui));
            docs.push(AllowlistDoc { cidr: net.to_string(), name: String::new(), sql, ui });
        }
        let s = snapshot(docs, vec![]);
        let listener = if ui { IngressListener::Ui } else { IngressListener::Sql };
        let mut sources = vec![random];
        for (i, bits) in near {
            if let Some((net, _, _)) = nets.get(i) {
                sources.push(match net {
                    IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(
                        u32::from(n.network()) | (bits as u32 & u32::from(n.hostmask())),
                    )),
                    IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(
                        u128::from(n.network()) | (bits & u128::from(n.hostmask())),
                    )),
                });
            }
        }
        for source in sources {
            let judged = match source {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, IpAddr::V4),
                v4 => v4,
            };
            let expect = nets.iter().any(|(n, sql, ui)| {
                n.contains(&judged) && match listener {
                    IngressListener::Sql => *sql,
                    IngressListener::Ui => *ui,
                    IngressListener::Private => false,
                }
            });
            let d = s.admit_ingress(source, listener);
            prop_assert_eq!(d.admitted, expect);
            match (&d.entry, d.reason) {
                (Some(e), IngressReason::Allowlisted) => {
                    prop_assert!(e.cidr().contains(judged) && e.admits(listener));
                    // No more specific admitting entry exists.
                    let narrower = nets.iter().any(|(n, sql, ui)| {
                        n.contains(&judged)
                            && if listener == IngressListener::Ui { *ui } else { *sql }
                            && prefix_len(*n) > prefix_len(e.cidr().net())
                    });
                    prop_assert!(!narrower);
                }
                (Some(e), IngressReason::ListenerNotAllowed) => {
                    prop_assert!(e.cidr().contains(judged) && !e.admits(listener));
                }
                (None, IngressReason::AllowlistEmpty) => prop_assert!(nets.is_empty()),
                (None, IngressReason::NotAllowlisted) => {
                    prop_assert!(!nets.iter().any(|(n, _, _)| n.contains(&judged)));
                }
                other => prop_assert!(false, "unexpected decision {:?}", other),
            }
        }
    }
}
