use std::net::IpAddr;

use super::*;
use crate::compile;
use crate::decide::tests::{document, endpoint, rule};

fn name(s: &str) -> Hostname {
    s.parse().expect("test name parses")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address parses")
}

fn operator(mut r: crate::RuleDoc) -> crate::RuleDoc {
    r.crl_managed = true;
    r
}

fn snapshot(policy: TrafficPolicy) -> Snapshot {
    compile(&document(
        policy,
        vec![
            rule("r-exact", "api.example.com", &[443], &[]),
            rule("r-wild", "*.example.com", &[8443], &[]),
            rule("r-deep", "*.eu.example.com", &[443], &[]),
            rule("r-path", "storage.example.net", &[443], &["/bucket/*"]),
            rule("r-cidr", "203.0.113.0/24", &[443], &[]),
            rule("r-loopback", "127.0.0.0/8", &[9000], &[]),
            rule(
                "r-shadowed-by-endpoint",
                "broker.kafka.example.org",
                &[9092],
                &[],
            ),
            operator(rule(
                "op-telemetry",
                "telemetry.ops.example.com",
                &[443],
                &[],
            )),
            operator(rule("op-kafka", "ops.kafka.example.org", &[443], &[])),
        ],
        vec![endpoint(
            "pe-1",
            "pe-1.endpoints.example.net",
            &["*.kafka.example.org", "broker.confluent.example.io"],
        )],
    ))
    .expect("fixture compiles")
}

fn rule_id(answer: &NameAnswer) -> Option<&str> {
    answer.rule().map(|r| &*r.id)
}

#[test]
fn fqdn_rules_answer_on_any_port_and_path_most_specific_first() {
    let snap = snapshot(TrafficPolicy::DefaultDeny);
    for (n, want) in [
        ("api.example.com", "r-exact"),
        ("API.Example.COM.", "r-exact"),
        ("www.example.com", "r-wild"),
        ("a.b.example.com", "r-wild"),
        ("x.eu.example.com", "r-deep"),
        // A path rule answers: plain HTTP to it may be allowed.
        ("storage.example.net", "r-path"),
    ] {
        let got = snap.answer_name(&name(n));
        assert_eq!(rule_id(&got), Some(want), "{n}: {got:?}");
        assert_eq!(got.reason(), Reason::AllowedByRule, "{n}");
        assert!(got.is_answered());
    }
}

#[test]
fn wildcard_does_not_match_its_apex() {
    let snap = snapshot(TrafficPolicy::DefaultDeny);
    assert_eq!(
        snap.answer_name(&name("example.com")),
        NameAnswer::Denied(Reason::NoRuleForDestination)
    );
}

#[test]
fn endpoint_names_and_addresses_route_to_the_endpoint() {
    let snap = snapshot(TrafficPolicy::DefaultDeny);
    for n in [
        "pe-1.endpoints.example.net",
        "b1.kafka.example.org",
        "broker.kafka.example.org",
        "broker.confluent.example.io",
    ] {
        let got = snap.answer_name(&name(n));
        assert_eq!(
            got,
            NameAnswer::Endpoint {
                endpoint_id: "pe-1".into()
            },
            "{n}"
        );
        assert_eq!(got.reason(), Reason::PrivateEndpoint);
    }
    // Not below the wildcard: no endpoint, no rule.
    assert!(!snap.answer_name(&name("kafka.example.org")).is_answered());
}

#[test]
fn operator_rules_come_before_endpoints() {
    let snap = snapshot(TrafficPolicy::DefaultDeny);
    let got = snap.answer_name(&name("ops.kafka.example.org"));
    assert_eq!(rule_id(&got), Some("op-kafka"));
    assert_eq!(got.reason(), Reason::AllowedByOperatorRule);
    let got = snap.answer_name(&name("telemetry.ops.example.com"));
    assert_eq!(rule_id(&got), Some("op-telemetry"));
}

#[test]
fn unnamed_names_per_traffic_policy() {
    let n = name("secret.attacker.example");
    assert_eq!(
        snapshot(TrafficPolicy::DefaultDeny).answer_name(&n),
        NameAnswer::Denied(Reason::NoRuleForDestination)
    );
    assert_eq!(
        snapshot(TrafficPolicy::AllowAll).answer_name(&n),
        NameAnswer::AllowAll
    );
    let report = snapshot(TrafficPolicy::ReportOnly).answer_name(&n);
    assert_eq!(report, NameAnswer::WouldDeny(Reason::NoRuleForDestination));
    assert!(report.is_answered());
    // A rule still names what allows under every policy.
    let got = snapshot(TrafficPolicy::ReportOnly).answer_name(&name("api.example.com"));
    assert_eq!(rule_id(&got), Some("r-exact"));
}

#[test]
fn a_name_only_a_cidr_rule_could_allow_is_refused_under_default_deny() {
    // `203.0.113.0/24` allows connections to its addresses; the name is not resolved to find out.
    let snap = snapshot(TrafficPolicy::DefaultDeny);
    assert!(!snap.answer_name(&name("host.cidr.example")).is_answered());
}

#[test]
fn no_snapshot_refuses_everything() {
    let snap = Snapshot::empty_deny();
    assert_eq!(
        snap.answer_name(&name("api.example.com")),
        NameAnswer::Denied(Reason::NoSnapshot)
    );
}

#[test]
fn address_guard_for_answers() {
    let snap = snapshot(TrafficPolicy::AllowAll);
    let own_addr = ip("198.51.100.7");
    let own = |a: IpAddr| a == own_addr;
    assert_eq!(snap.answer_address(ip("203.0.113.5"), &own), Ok(()));
    assert_eq!(snap.answer_address(ip("2001:db8::5"), &own), Ok(()));
    assert_eq!(
        snap.answer_address(ip("10.0.0.1"), &own),
        Err(AddrClass::Private)
    );
    assert_eq!(
        snap.answer_address(ip("169.254.169.254"), &own),
        Err(AddrClass::Metadata)
    );
    assert_eq!(
        snap.answer_address(ip("::ffff:10.0.0.1"), &own),
        Err(AddrClass::Private)
    );
    assert_eq!(
        snap.answer_address(own_addr, &own),
        Err(AddrClass::OwnAddress)
    );
    // A CIDR rule covering a special address (on whatever port) lets it be answered.
    assert_eq!(snap.answer_address(ip("127.0.0.1"), &own), Ok(()));
    assert_eq!(snap.answer_address(ip("::ffff:127.0.0.9"), &own), Ok(()));
}
