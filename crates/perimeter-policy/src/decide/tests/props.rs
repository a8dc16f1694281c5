//! Properties of decisions over generated documents and queries, with a linear-scan model of
//! `DEFAULT_DENY` as the oracle for the indexes.

use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::{document, endpoint, rule};
use crate::decide::{Decision, Destination, Reason, Verdict};
use crate::{
    Cidr, HostPattern, Hostname, PathPattern, PolicyDocument, RuleDoc, RuleType, Snapshot,
    TrafficPolicy, classify, compile, ipv4_behind,
};

const BASES: [&str; 3] = ["example.com", "example.net", "corp.example.org"];
const LABELS: [&str; 4] = ["a", "b", "api", "eu"];
const ADDRS: [&str; 16] = [
    "203.0.113.5",
    "203.0.113.200",
    "198.51.100.7",
    "192.0.2.99",
    "127.0.0.1",
    "10.1.2.3",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "2001:db8::5",
    "2001:db8:1::9",
    "fd00:ec2::254",
    "::ffff:127.0.0.1",
    "64:ff9b::cb00:7105",
    "::1",
];
const PORTS: [u16; 4] = [80, 443, 8443, 9092];

fn name_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(&LABELS[..]), 0..3),
        prop::sample::select(&BASES[..]),
    )
        .prop_map(|(labels, base)| {
            let mut name = labels.join(".");
            if !name.is_empty() {
                name.push('.');
            }
            name + base
        })
}

fn pattern_strategy() -> impl Strategy<Value = String> {
    (any::<bool>(), name_strategy())
        .prop_map(|(wild, name)| if wild { format!("*.{name}") } else { name })
}

fn addr_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        3 => prop::sample::select(&ADDRS[..]).prop_map(|a| a.parse().unwrap()),
        1 => any::<[u8; 4]>().prop_map(IpAddr::from),
        1 => any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn cidr_strategy() -> impl Strategy<Value = String> {
    (
        addr_strategy(),
        prop::sample::select(&[0usize, 1, 2, 3, 4][..]),
    )
        .prop_map(|(addr, i)| {
            // A few lengths over a small pool of addresses: prefixes nest often.
            let len = if addr.is_ipv4() {
                [8, 16, 24, 28, 32][i]
            } else {
                [16, 32, 48, 96, 128][i]
            };
            IpNet::new(addr, len).unwrap().trunc().to_string()
        })
}

fn ports_strategy() -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(prop::sample::select(&PORTS[..]), 0..3)
}

fn rule_strategy() -> impl Strategy<Value = RuleDoc> {
    let fqdn = (
        pattern_strategy(),
        ports_strategy(),
        prop::sample::select(vec![vec![], vec!["/v1/*"], vec!["/v1/*", "/health"]]),
    )
        .prop_map(|(dest, ports, paths)| rule("", &dest, &ports, &paths));
    let cidr =
        (cidr_strategy(), ports_strategy()).prop_map(|(dest, ports)| rule("", &dest, &ports, &[]));
    (
        prop_oneof![3 => fqdn, 2 => cidr],
        prop::bool::weighted(0.15),
    )
        .prop_map(|(mut rule, operator)| {
            rule.crl_managed = operator;
            rule
        })
}

fn policy_strategy() -> impl Strategy<Value = TrafficPolicy> {
    prop::sample::select(TrafficPolicy::ALL.to_vec())
}

fn document_strategy(max_rules: usize) -> impl Strategy<Value = PolicyDocument> {
    (
        policy_strategy(),
        prop::collection::vec(rule_strategy(), 0..max_rules),
        prop::collection::vec(pattern_strategy(), 0..3),
        prop::option::of(name_strategy()),
    )
        .prop_map(|(policy, mut rules, domains, address)| {
            for (i, rule) in rules.iter_mut().enumerate() {
                rule.id = format!("r{i}");
                rule.name = format!("name of r{i}");
            }
            let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
            let endpoints = if domains.is_empty() && address.is_none() {
                Vec::new()
            } else {
                vec![endpoint("pe-1", address.as_deref().unwrap_or(""), &domains)]
            };
            document(policy, rules, endpoints)
        })
}

#[derive(Debug, Clone)]
enum Query {
    Name(String, IpAddr),
    Ip(IpAddr),
}

fn query_strategy() -> impl Strategy<Value = (Query, u16, Option<&'static str>)> {
    (
        prop_oneof![
            3 => (name_strategy(), addr_strategy()).prop_map(|(n, a)| Query::Name(n, a)),
            2 => addr_strategy().prop_map(Query::Ip),
        ],
        prop_oneof![3 => prop::sample::select(&PORTS[..]), 1 => any::<u16>()],
        prop::sample::select(vec![None, Some("/v1/x"), Some("/health"), Some("/other")]),
    )
}

const OWN: [u8; 4] = [192, 0, 2, 99];

fn own(addr: IpAddr) -> bool {
    addr == IpAddr::from(OWN)
}

/// The gateway's two steps.
fn decide(snapshot: &Snapshot, query: &Query, port: u16, path: Option<&str>) -> Decision {
    match query {
        Query::Name(name, addr) => {
            let name: Hostname = name.parse().unwrap();
            let target = snapshot.decide_target(Destination::Name(&name), port, path);
            snapshot.decide_address(&target, *addr, port, &own)
        }
        Query::Ip(addr) => {
            let target = snapshot.decide_target(Destination::Ip(*addr), port, path);
            snapshot.decide_address(&target, *addr, port, &own)
        }
    }
}

fn check(snapshot: &Snapshot, query: &Query, port: u16, path: Option<&str>) -> Decision {
    match query {
        Query::Name(name, _) => {
            let name: Hostname = name.parse().unwrap();
            snapshot.check(Destination::Name(&name), port, path)
        }
        Query::Ip(addr) => snapshot.check(Destination::Ip(*addr), port, path),
    }
}

fn assert_well_formed(decision: &Decision, policy: TrafficPolicy) {
    let by_rule = matches!(
        decision.reason(),
        Reason::AllowedByRule | Reason::AllowedByOperatorRule
    );
    match decision.verdict() {
        Verdict::Allow => {
            assert!(
                by_rule || matches!(decision.reason(), Reason::AllowAll | Reason::ReportOnly),
                "allow without a rule or policy reason: {decision:?}"
            );
            assert_eq!(decision.rule().is_some(), by_rule, "{decision:?}");
            if decision.reason() == Reason::AllowAll {
                assert_eq!(policy, TrafficPolicy::AllowAll);
            }
            if decision.reason() == Reason::ReportOnly {
                assert_eq!(policy, TrafficPolicy::ReportOnly);
                assert!(decision.would_deny().is_some_and(|r| !r.is_allow()));
            }
        }
        Verdict::Deny => {
            assert!(!decision.reason().is_allow(), "{decision:?}");
            assert!(decision.rule().is_none(), "{decision:?}");
        }
        Verdict::PrivateEndpoint { .. } => {
            assert_eq!(decision.reason(), Reason::PrivateEndpoint);
        }
    }
    if decision.reason() != Reason::ReportOnly {
        assert_eq!(decision.would_deny(), None, "{decision:?}");
    }
    assert_eq!(decision.is_allowed(), decision.reason().is_allow());
}

/// Linear-scan model of the decision's verdict, with the precedence of the module doc.
fn model(doc: &PolicyDocument, query: &Query, port: u16, path: Option<&str>) -> ModelVerdict {
    let port_ok = |r: &RuleDoc| r.ports.is_empty() || r.ports.contains(&port);
    let path_ok = |r: &RuleDoc| {
        r.paths.is_empty()
            || path.is_some_and(|p| {
                r.paths
                    .iter()
                    .any(|pat| pat.parse::<PathPattern>().unwrap().matches(p))
            })
    };
    let fqdn_allows = |r: &RuleDoc, name: &Hostname| {
        r.rule_type == RuleType::Fqdn
            && r.destination.parse::<HostPattern>().unwrap().matches(name)
            && port_ok(r)
            && path_ok(r)
    };
    let (name, addr) = match query {
        Query::Name(name, addr) => (Some(name.parse::<Hostname>().unwrap()), *addr),
        Query::Ip(addr) => (None, *addr),
    };
    let judged = ipv4_behind(addr);
    let cidr_allows = |r: &RuleDoc| {
        r.rule_type == RuleType::Cidr
            && r.destination.parse::<Cidr>().unwrap().contains(judged)
            && port_ok(r)
    };
    let special = own(addr) || own(judged) || classify(addr).is_special();
    let mut fqdn_allowed = false;
    if let Some(name) = &name {
        if doc
            .rules
            .iter()
            .any(|r| r.crl_managed && fqdn_allows(r, name))
        {
            fqdn_allowed = true;
        } else if doc.private_endpoints.iter().any(|e| {
            e.endpoint_address == name.as_str()
                || e.domain_names
                    .iter()
                    .any(|d| d.parse::<HostPattern>().unwrap().matches(name))
        }) {
            return ModelVerdict::Endpoint;
        } else {
            fqdn_allowed = doc.rules.iter().any(|r| fqdn_allows(r, name));
        }
    }
    if doc.rules.iter().any(cidr_allows) || (fqdn_allowed && !special) {
        return ModelVerdict::Allow;
    }
    match (doc.traffic_policy, special) {
        (TrafficPolicy::DefaultDeny, _) | (_, true) => ModelVerdict::Deny,
        _ => ModelVerdict::Allow,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ModelVerdict {
    Allow,
    Deny,
    Endpoint,
}

fn verdict_of(decision: &Decision) -> ModelVerdict {
    match decision.verdict() {
        Verdict::Allow => ModelVerdict::Allow,
        Verdict::Deny => ModelVerdict::Deny,
        Verdict::PrivateEndpoint { .. } => ModelVerdict::Endpoint,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Decisions never panic, are well formed, agree with the linear-scan model, and the rule
    /// they name allows the query on its own.
    #[test]
    fn decisions_match_the_model(
        doc in document_strategy(24),
        queries in prop::collection::vec(query_strategy(), 1..16),
    ) {
        // Generated endpoint names may collide with each other only within one endpoint,
        // which compiles; a rule the validator refuses is a generator bug.
        let snapshot = compile(&doc).expect("generated documents compile");
        for (query, port, path) in &queries {
            let got = decide(&snapshot, query, *port, *path);
            assert_well_formed(&got, doc.traffic_policy);
            let want = model(&doc, query, *port, *path);
            prop_assert_eq!(verdict_of(&got), want, "{:?} {} {:?} -> {:?}", query, port, path, got);
            if let Some(rule) = got.rule() {
                let only: Vec<RuleDoc> = doc.rules.iter().filter(|r| *r.id == *rule.id).cloned().collect();
                let alone = PolicyDocument {
                    traffic_policy: TrafficPolicy::DefaultDeny,
                    rules: only,
                    private_endpoints: Vec::new(),
                    ..doc.clone()
                };
                prop_assert_eq!(model(&alone, query, *port, *path), ModelVerdict::Allow, "named rule {:?} does not allow alone", rule);
            }
            let what_if = check(&snapshot, query, *port, *path);
            assert_well_formed(&what_if, doc.traffic_policy);
        }
    }

    /// A snapshot compiled from the document round-tripped through JSON decides the same.
    #[test]
    fn json_round_trip_decides_the_same(
        doc in document_strategy(16),
        queries in prop::collection::vec(query_strategy(), 1..16),
    ) {
        let json = serde_json::to_string(&doc).unwrap();
        let back: PolicyDocument = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &doc);
        let a = compile(&doc).unwrap();
        let b = compile(&back).unwrap();
        for (query, port, path) in &queries {
            prop_assert_eq!(decide(&a, query, *port, *path), decide(&b, query, *port, *path));
            prop_assert_eq!(check(&a, query, *port, *path), check(&b, query, *port, *path));
        }
    }

    /// DEFAULT_DENY with zero rules denies every destination that is not a private endpoint.
    #[test]
    fn default_deny_without_rules_denies(
        doc in document_strategy(1),
        queries in prop::collection::vec(query_strategy(), 1..32),
    ) {
        let doc = PolicyDocument { traffic_policy: TrafficPolicy::DefaultDeny, rules: Vec::new(), ..doc };
        let snapshot = compile(&doc).unwrap();
        for (query, port, path) in &queries {
            let got = decide(&snapshot, query, *port, *path);
            match got.verdict() {
                Verdict::Deny => {}
                Verdict::PrivateEndpoint { .. } => prop_assert!(matches!(query, Query::Name(..))),
                Verdict::Allow => prop_assert!(false, "allowed {:?}: {:?}", query, got),
            }
        }
    }

    /// Arbitrary names, addresses, ports and paths never panic a decision, on the empty
    /// snapshot included.
    #[test]
    fn never_panics(
        doc in document_strategy(16),
        name in "[a-z0-9.-]{1,40}",
        addr in addr_strategy(),
        port in any::<u16>(),
        path in prop::option::of("/[ -~]{0,20}"),
    ) {
        let snapshot = compile(&doc).unwrap();
        let empty = Snapshot::empty_deny();
        for s in [&snapshot, &empty] {
            if let Ok(name) = name.parse::<Hostname>() {
                let target = s.decide_target(Destination::Name(&name), port, path.as_deref());
                let d = s.decide_address(&target, addr, port, &own);
                assert_well_formed(&d, s.traffic_policy());
                let d = s.check(Destination::Name(&name), port, path.as_deref());
                assert_well_formed(&d, s.traffic_policy());
            }
            let target = s.decide_target(Destination::Ip(addr), port, path.as_deref());
            let d = s.decide_address(&target, addr, port, &own);
            assert_well_formed(&d, s.traffic_policy());
            // A target of the other snapshot.
            let other = if std::ptr::eq(s, &snapshot) { &empty } else { &snapshot };
            let d = other.decide_address(&target, addr, port, &own);
            prop_assert_eq!(d.reason(), Reason::SnapshotMismatch);
        }
    }
}
