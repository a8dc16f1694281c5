use std::net::IpAddr;

use super::*;
use crate::{
    BackendDoc, EndpointDoc, PolicyDocument, RuleDoc, RuleType, compile, parse_ip_literal,
};

mod props;

pub(crate) fn rule(id: &str, destination: &str, ports: &[u16], paths: &[&str]) -> RuleDoc {
    let rule_type = if destination.parse::<crate::Cidr>().is_ok() {
        RuleType::Cidr
    } else {
        RuleType::Fqdn
    };
    RuleDoc {
        id: id.to_owned(),
        name: format!("name of {id}"),
        rule_type,
        destination: destination.to_owned(),
        ports: ports.to_vec(),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        crl_managed: false,
    }
}

fn operator(mut rule: RuleDoc) -> RuleDoc {
    rule.crl_managed = true;
    rule
}

pub(crate) fn endpoint(id: &str, address: &str, domains: &[&str]) -> EndpointDoc {
    EndpointDoc {
        id: id.to_owned(),
        endpoint_address: address.to_owned(),
        domain_names: domains.iter().map(|d| (*d).to_owned()).collect(),
        backends: vec![BackendDoc::plain("10.9.9.9:9092")],
        region: "us-east-1".to_owned(),
        connection_id: format!("{id}-connection"),
        ports: vec![],
        proxy_protocol: false,
        special_addresses: false,
    }
}

pub(crate) fn document(
    policy: TrafficPolicy,
    rules: Vec<RuleDoc>,
    endpoints: Vec<EndpointDoc>,
) -> PolicyDocument {
    PolicyDocument {
        format: 1,
        version: 7,
        cluster_id: "cluster-1".to_owned(),
        traffic_policy: policy,
        rules,
        ingress: Default::default(),
        private_endpoints: endpoints,
        tls_inspection: None,
    }
}

/// The gateway's own address in these tests (otherwise a public documentation address).
const OWN: &str = "192.0.2.99";
/// A public address no CIDR rule of the fixture covers.
const PUBLIC: &str = "192.0.2.10";

fn own(addr: IpAddr) -> bool {
    addr == OWN.parse::<IpAddr>().unwrap()
}

fn fixture(policy: TrafficPolicy) -> Snapshot {
    compile(&document(
        policy,
        vec![
            rule("r-exact", "api.example.com", &[443], &[]),
            rule("r-wild", "*.example.com", &[443, 8443], &[]),
            rule("r-deep-wild", "*.eu.example.com", &[443], &[]),
            rule("r-apex", "example.org", &[], &[]),
            rule(
                "r-path",
                "storage.example.net",
                &[443],
                &["/bucket/*", "/health"],
            ),
            rule("r-cidr24", "203.0.113.0/24", &[443], &[]),
            rule("r-cidr28", "203.0.113.16/28", &[443], &[]),
            rule("r-v6-32", "2001:db8::/32", &[443], &[]),
            rule("r-v6-48", "2001:db8:1::/48", &[], &[]),
            rule("r-v6-64", "2001:db8:1:2::/64", &[8080], &[]),
            rule("r-loopback", "127.0.0.0/8", &[9000], &[]),
            rule("r-metadata-v6", "fd00:ec2::254/128", &[80], &[]),
            operator(rule(
                "op-telemetry",
                "telemetry.ops.example.com",
                &[443],
                &[],
            )),
            operator(rule("op-cidr", "198.51.100.0/24", &[443], &[])),
        ],
        vec![endpoint(
            "pe-1",
            "pe-1.endpoints.example.com",
            &["*.kafka.example.com", "broker.confluent.example.io"],
        )],
    ))
    .expect("fixture compiles")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Allow,
    Deny,
    Endpoint(&'static str),
}

struct Case {
    name: &'static str,
    dest: &'static str,
    port: u16,
    path: Option<&'static str>,
    /// The resolved address a name is dialled on (ignored for IP literals).
    addr: &'static str,
    want: Want,
    reason: Reason,
    rule: Option<&'static str>,
    would_deny: Option<Reason>,
}

const fn case(
    name: &'static str,
    dest: &'static str,
    port: u16,
    want: Want,
    reason: Reason,
    rule: Option<&'static str>,
) -> Case {
    Case {
        name,
        dest,
        port,
        path: None,
        addr: PUBLIC,
        want,
        reason,
        rule,
        would_deny: None,
    }
}

impl Case {
    const fn path(mut self, path: &'static str) -> Self {
        self.path = Some(path);
        self
    }

    const fn addr(mut self, addr: &'static str) -> Self {
        self.addr = addr;
        self
    }

    const fn would_deny(mut self, reason: Reason) -> Self {
        self.would_deny = Some(reason);
        self
    }
}

/// Decide as the gateway does: the target, then the (resolved or literal) address.
fn decide(snapshot: &Snapshot, dest: &str, port: u16, path: Option<&str>, addr: &str) -> Decision {
    match parse_ip_literal(dest) {
        Ok(ip) => {
            let target = snapshot.decide_target(Destination::Ip(ip), port, path);
            snapshot.decide_address(&target, ip, port, &own)
        }
        Err(_) => {
            let name: Hostname = dest.parse().expect("test name parses");
            let target = snapshot.decide_target(Destination::Name(&name), port, path);
            if let Some(decision) = target.final_decision() {
                return decision.clone();
            }
            let addr = parse_ip_literal(addr).expect("test address parses");
            snapshot.decide_address(&target, addr, port, &own)
        }
    }
}

fn run(policy: TrafficPolicy, snapshot: &Snapshot, cases: &[Case]) {
    for c in cases {
        let got = decide(snapshot, c.dest, c.port, c.path, c.addr);
        let label = format!(
            "{policy}: {} ({}:{} via {})",
            c.name, c.dest, c.port, c.addr
        );
        let verdict = match got.verdict() {
            Verdict::Allow => Want::Allow,
            Verdict::Deny => Want::Deny,
            Verdict::PrivateEndpoint { endpoint_id } => {
                assert_eq!(
                    Some(&**endpoint_id),
                    match c.want {
                        Want::Endpoint(id) => Some(id),
                        _ => None,
                    },
                    "{label}: {got:?}"
                );
                c.want
            }
        };
        assert_eq!(verdict, c.want, "{label}: verdict of {got:?}");
        assert_eq!(got.reason(), c.reason, "{label}: reason of {got:?}");
        assert_eq!(
            got.rule().map(|r| &*r.id),
            c.rule,
            "{label}: rule of {got:?}"
        );
        assert_eq!(
            got.would_deny(),
            c.would_deny,
            "{label}: would_deny of {got:?}"
        );
        if let Some(rule) = got.rule() {
            assert_eq!(&*rule.name, format!("name of {}", rule.id), "{label}");
        }
    }
}

use Reason::*;
use Want::{Allow, Deny, Endpoint};

fn special(class: AddrClass) -> Reason {
    SpecialAddress(class)
}

#[test]
fn default_deny_table() {
    let policy = TrafficPolicy::DefaultDeny;
    let snapshot = fixture(policy);
    let cases = [
        // Names: exact, wildcard, specificity, ports.
        case(
            "exact over wildcard",
            "api.example.com",
            443,
            Allow,
            AllowedByRule,
            Some("r-exact"),
        ),
        case(
            "wildcard below",
            "www.example.com",
            443,
            Allow,
            AllowedByRule,
            Some("r-wild"),
        ),
        case(
            "wildcard at depth",
            "a.b.c.example.com",
            8443,
            Allow,
            AllowedByRule,
            Some("r-wild"),
        ),
        case(
            "longer suffix over shorter",
            "x.eu.example.com",
            443,
            Allow,
            AllowedByRule,
            Some("r-deep-wild"),
        ),
        case(
            "shorter suffix when longer misses port",
            "x.eu.example.com",
            8443,
            Allow,
            AllowedByRule,
            Some("r-wild"),
        ),
        case(
            "wildcard when exact misses port",
            "api.example.com",
            8443,
            Allow,
            AllowedByRule,
            Some("r-wild"),
        ),
        case(
            "apex not matched by wildcard",
            "example.com",
            443,
            Deny,
            NoRuleForDestination,
            None,
        ),
        case(
            "wildcard suffix itself not matched",
            "eu.example.com",
            443,
            Allow,
            AllowedByRule,
            Some("r-wild"),
        ),
        case(
            "trailing-label lookalike",
            "example.com.evil.net",
            443,
            Deny,
            NoRuleForDestination,
            None,
        ),
        case(
            "prefix lookalike",
            "notexample.com",
            443,
            Deny,
            NoRuleForDestination,
            None,
        ),
        case(
            "port not allowed",
            "www.example.com",
            80,
            Deny,
            PortNotAllowed,
            None,
        ),
        case(
            "exact all ports",
            "example.org",
            5432,
            Allow,
            AllowedByRule,
            Some("r-apex"),
        ),
        case(
            "exact does not cover below",
            "www.example.org",
            443,
            Deny,
            NoRuleForDestination,
            None,
        ),
        case(
            "unknown name",
            "unknown.example.net",
            443,
            Deny,
            NoRuleForDestination,
            None,
        ),
        // Paths.
        case(
            "path prefix",
            "storage.example.net",
            443,
            Allow,
            AllowedByRule,
            Some("r-path"),
        )
        .path("/bucket/a/b"),
        case(
            "path exact",
            "storage.example.net",
            443,
            Allow,
            AllowedByRule,
            Some("r-path"),
        )
        .path("/health"),
        case(
            "path prefix not its parent",
            "storage.example.net",
            443,
            Deny,
            PathNotAllowed,
            None,
        )
        .path("/bucket"),
        case(
            "path not allowed",
            "storage.example.net",
            443,
            Deny,
            PathNotAllowed,
            None,
        )
        .path("/admin"),
        case(
            "path unseen needs TLS inspection",
            "storage.example.net",
            443,
            Deny,
            PathNeedsTlsInspection,
            None,
        ),
        case(
            "path rule port miss",
            "storage.example.net",
            80,
            Deny,
            PortNotAllowed,
            None,
        )
        .path("/health"),
        // CIDR rules, literal and named.
        case(
            "v4 longest prefix",
            "203.0.113.20",
            443,
            Allow,
            AllowedByRule,
            Some("r-cidr28"),
        ),
        case(
            "v4 shorter prefix",
            "203.0.113.200",
            443,
            Allow,
            AllowedByRule,
            Some("r-cidr24"),
        ),
        case(
            "v4 port not allowed",
            "203.0.113.20",
            80,
            Deny,
            PortNotAllowed,
            None,
        ),
        case(
            "v4 no cidr",
            "192.0.2.10",
            443,
            Deny,
            IpLiteralNeedsCidrRule,
            None,
        ),
        case(
            "v6 longest prefix",
            "2001:db8:1::5",
            22,
            Allow,
            AllowedByRule,
            Some("r-v6-48"),
        ),
        case(
            "v6 bracketed",
            "[2001:db8:1::5]",
            443,
            Allow,
            AllowedByRule,
            Some("r-v6-48"),
        ),
        case(
            "v6 longer prefix",
            "2001:db8:1:2::1",
            8080,
            Allow,
            AllowedByRule,
            Some("r-v6-64"),
        ),
        case(
            "v6 shorter prefix when longer misses port",
            "2001:db8:1:2::1",
            443,
            Allow,
            AllowedByRule,
            Some("r-v6-48"),
        ),
        case(
            "v6 shorter prefix",
            "2001:db8:2::5",
            443,
            Allow,
            AllowedByRule,
            Some("r-v6-32"),
        ),
        case(
            "v6 shorter prefix port miss",
            "2001:db8:2::5",
            22,
            Deny,
            PortNotAllowed,
            None,
        ),
        case(
            "v6 no cidr",
            "2606:4700::1111",
            443,
            Deny,
            IpLiteralNeedsCidrRule,
            None,
        ),
        case(
            "mapped v4 judged as v4",
            "::ffff:203.0.113.20",
            443,
            Allow,
            AllowedByRule,
            Some("r-cidr28"),
        ),
        case(
            "name dialled into cidr",
            "unknown.example.net",
            443,
            Allow,
            AllowedByRule,
            Some("r-cidr28"),
        )
        .addr("203.0.113.20"),
        case(
            "cidr makes path rule moot",
            "storage.example.net",
            443,
            Allow,
            AllowedByRule,
            Some("r-cidr24"),
        )
        .addr("203.0.113.1"),
        case(
            "fqdn rule named over cidr",
            "api.example.com",
            443,
            Allow,
            AllowedByRule,
            Some("r-exact"),
        )
        .addr("203.0.113.20"),
        case(
            "name into cidr, port miss",
            "unknown.example.net",
            80,
            Deny,
            PortNotAllowed,
            None,
        )
        .addr("203.0.113.20"),
        // The address guard.
        case(
            "loopback literal",
            "127.0.0.1",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        ),
        case(
            "loopback named by cidr",
            "127.0.0.1",
            9000,
            Allow,
            AllowedByRule,
            Some("r-loopback"),
        ),
        case(
            "rfc1918 literal",
            "10.1.2.3",
            443,
            Deny,
            special(AddrClass::Private),
            None,
        ),
        case(
            "metadata v4",
            "169.254.169.254",
            80,
            Deny,
            special(AddrClass::Metadata),
            None,
        ),
        case(
            "metadata v6",
            "fd00:ec2::254",
            443,
            Deny,
            special(AddrClass::Metadata),
            None,
        ),
        case(
            "metadata v6 named by cidr",
            "fd00:ec2::254",
            80,
            Allow,
            AllowedByRule,
            Some("r-metadata-v6"),
        ),
        case(
            "mapped loopback",
            "::ffff:127.0.0.1",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        ),
        case(
            "mapped loopback named by v4 cidr",
            "::ffff:127.0.0.1",
            9000,
            Allow,
            AllowedByRule,
            Some("r-loopback"),
        ),
        case(
            "nat64 loopback",
            "64:ff9b::7f00:1",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        ),
        case(
            "cgnat",
            "100.64.0.1",
            443,
            Deny,
            special(AddrClass::Cgnat),
            None,
        ),
        case(
            "documentation range is public",
            "203.0.113.1",
            443,
            Allow,
            AllowedByRule,
            Some("r-cidr24"),
        ),
        case(
            "fqdn never admits loopback",
            "api.example.com",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        )
        .addr("127.0.0.1"),
        case(
            "fqdn never admits private",
            "www.example.com",
            443,
            Deny,
            special(AddrClass::Private),
            None,
        )
        .addr("10.0.0.5"),
        case(
            "fqdn never admits mapped metadata",
            "www.example.com",
            443,
            Deny,
            special(AddrClass::Metadata),
            None,
        )
        .addr("::ffff:169.254.169.254"),
        case(
            "fqdn never admits nat64 loopback",
            "www.example.com",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        )
        .addr("64:ff9b::7f00:1"),
        case(
            "fqdn never admits cgnat",
            "www.example.com",
            443,
            Deny,
            special(AddrClass::Cgnat),
            None,
        )
        .addr("100.64.0.1"),
        case(
            "fqdn never admits own address",
            "www.example.com",
            443,
            Deny,
            special(AddrClass::OwnAddress),
            None,
        )
        .addr(OWN),
        case(
            "name to special named by cidr",
            "unknown.example.net",
            9000,
            Allow,
            AllowedByRule,
            Some("r-loopback"),
        )
        .addr("127.0.0.1"),
        case(
            "unknown name to special",
            "unknown.example.net",
            443,
            Deny,
            special(AddrClass::Private),
            None,
        )
        .addr("10.0.0.5"),
        // Operator rules.
        case(
            "operator fqdn beats customer wildcard",
            "telemetry.ops.example.com",
            443,
            Allow,
            AllowedByOperatorRule,
            Some("op-telemetry"),
        ),
        case(
            "operator cidr",
            "198.51.100.7",
            443,
            Allow,
            AllowedByOperatorRule,
            Some("op-cidr"),
        ),
        case(
            "operator cidr for a name",
            "www.example.com",
            443,
            Allow,
            AllowedByOperatorRule,
            Some("op-cidr"),
        )
        .addr("198.51.100.7"),
        case(
            "operator fqdn still guarded",
            "telemetry.ops.example.com",
            443,
            Deny,
            special(AddrClass::Metadata),
            None,
        )
        .addr("169.254.169.254"),
        // Private endpoints.
        case(
            "endpoint address beats customer wildcard",
            "pe-1.endpoints.example.com",
            443,
            Endpoint("pe-1"),
            PrivateEndpoint,
            None,
        ),
        case(
            "endpoint wildcard domain, any port",
            "b-1.kafka.example.com",
            9092,
            Endpoint("pe-1"),
            PrivateEndpoint,
            None,
        ),
        case(
            "endpoint exact domain",
            "broker.confluent.example.io",
            1,
            Endpoint("pe-1"),
            PrivateEndpoint,
            None,
        ),
        case(
            "endpoint skips the guard",
            "b-2.kafka.example.com",
            9092,
            Endpoint("pe-1"),
            PrivateEndpoint,
            None,
        )
        .addr("10.0.0.1"),
        case(
            "endpoint wildcard apex is a rule matter",
            "kafka.example.com",
            443,
            Allow,
            AllowedByRule,
            Some("r-wild"),
        ),
        case(
            "endpoint exact domain not below",
            "x.broker.confluent.example.io",
            443,
            Deny,
            NoRuleForDestination,
            None,
        ),
    ];
    run(policy, &snapshot, &cases);
}

#[test]
fn allow_all_table() {
    let policy = TrafficPolicy::AllowAll;
    let snapshot = fixture(policy);
    let cases = [
        case(
            "unknown name",
            "unknown.example.net",
            443,
            Allow,
            AllowAll,
            None,
        ),
        case(
            "port no rule has",
            "www.example.com",
            80,
            Allow,
            AllowAll,
            None,
        ),
        case(
            "rule still named",
            "www.example.com",
            443,
            Allow,
            AllowedByRule,
            Some("r-wild"),
        ),
        case(
            "path unseen",
            "storage.example.net",
            443,
            Allow,
            AllowAll,
            None,
        ),
        case("public literal", "192.0.2.10", 443, Allow, AllowAll, None),
        case(
            "loopback literal",
            "127.0.0.1",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        ),
        case(
            "loopback named by cidr",
            "127.0.0.1",
            9000,
            Allow,
            AllowedByRule,
            Some("r-loopback"),
        ),
        case(
            "rfc1918 literal",
            "10.1.2.3",
            443,
            Deny,
            special(AddrClass::Private),
            None,
        ),
        case(
            "metadata v4",
            "169.254.169.254",
            80,
            Deny,
            special(AddrClass::Metadata),
            None,
        ),
        case(
            "metadata v6",
            "fd00:ec2::254",
            443,
            Deny,
            special(AddrClass::Metadata),
            None,
        ),
        case(
            "mapped loopback",
            "::ffff:127.0.0.1",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        ),
        case(
            "nat64 loopback",
            "64:ff9b::7f00:1",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        ),
        case(
            "cgnat",
            "100.64.0.1",
            443,
            Deny,
            special(AddrClass::Cgnat),
            None,
        ),
        case(
            "own address literal",
            OWN,
            443,
            Deny,
            special(AddrClass::OwnAddress),
            None,
        ),
        case(
            "unknown name to loopback",
            "rebind.example.net",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        )
        .addr("127.0.0.1"),
        case(
            "fqdn never admits private",
            "api.example.com",
            443,
            Deny,
            special(AddrClass::Private),
            None,
        )
        .addr("10.0.0.5"),
        case(
            "fqdn never admits own address",
            "api.example.com",
            443,
            Deny,
            special(AddrClass::OwnAddress),
            None,
        )
        .addr(OWN),
        case(
            "endpoint",
            "b-1.kafka.example.com",
            9092,
            Endpoint("pe-1"),
            PrivateEndpoint,
            None,
        ),
    ];
    run(policy, &snapshot, &cases);
}

#[test]
fn report_only_table() {
    let policy = TrafficPolicy::ReportOnly;
    let snapshot = fixture(policy);
    let cases = [
        case(
            "unknown name",
            "unknown.example.net",
            443,
            Allow,
            ReportOnly,
            None,
        )
        .would_deny(NoRuleForDestination),
        case("port", "www.example.com", 80, Allow, ReportOnly, None).would_deny(PortNotAllowed),
        case(
            "path unseen",
            "storage.example.net",
            443,
            Allow,
            ReportOnly,
            None,
        )
        .would_deny(PathNeedsTlsInspection),
        case(
            "path not allowed",
            "storage.example.net",
            443,
            Allow,
            ReportOnly,
            None,
        )
        .path("/admin")
        .would_deny(PathNotAllowed),
        case(
            "allowed by rule",
            "www.example.com",
            443,
            Allow,
            AllowedByRule,
            Some("r-wild"),
        ),
        case("public literal", "192.0.2.10", 443, Allow, ReportOnly, None)
            .would_deny(IpLiteralNeedsCidrRule),
        case("literal port", "203.0.113.20", 80, Allow, ReportOnly, None)
            .would_deny(PortNotAllowed),
        case(
            "loopback is a real deny",
            "127.0.0.1",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        ),
        case(
            "fqdn to metadata is a real deny",
            "www.example.com",
            443,
            Deny,
            special(AddrClass::Metadata),
            None,
        )
        .addr("169.254.169.254"),
        case(
            "endpoint",
            "b-1.kafka.example.com",
            9092,
            Endpoint("pe-1"),
            PrivateEndpoint,
            None,
        ),
    ];
    run(policy, &snapshot, &cases);
}

#[test]
fn empty_snapshot_denies_everything() {
    let snapshot = Snapshot::empty_deny();
    assert!(!snapshot.is_installed());
    assert_eq!(snapshot.version(), 0);
    assert_eq!(snapshot.rule_count(), 0);
    for dest in ["api.example.com", "127.0.0.1", "192.0.2.10", "2001:db8::1"] {
        let got = decide(&snapshot, dest, 443, None, PUBLIC);
        assert_eq!(got.verdict(), &Verdict::Deny, "{dest}");
        assert_eq!(got.reason(), NoSnapshot, "{dest}");
        assert_eq!(got.reason().as_str(), "no_snapshot");
    }
    let name: Hostname = "api.example.com".parse().unwrap();
    let got = snapshot.check(Destination::Name(&name), 443, Some("/"));
    assert_eq!(got.reason(), NoSnapshot);
}

#[test]
fn default_deny_without_rules_denies_all_but_endpoints() {
    let snapshot = compile(&document(
        TrafficPolicy::DefaultDeny,
        Vec::new(),
        vec![endpoint("pe-1", "", &["*.kafka.example.com"])],
    ))
    .unwrap();
    let cases = [
        case(
            "name, early",
            "api.example.com",
            443,
            Deny,
            NoRuleForDestination,
            None,
        ),
        case(
            "public literal",
            "192.0.2.10",
            443,
            Deny,
            IpLiteralNeedsCidrRule,
            None,
        ),
        case(
            "special literal",
            "127.0.0.1",
            443,
            Deny,
            special(AddrClass::Loopback),
            None,
        ),
        case(
            "endpoint",
            "b.kafka.example.com",
            9092,
            Endpoint("pe-1"),
            PrivateEndpoint,
            None,
        ),
    ];
    run(TrafficPolicy::DefaultDeny, &snapshot, &cases);
    let name: Hostname = "api.example.com".parse().unwrap();
    let target = snapshot.decide_target(Destination::Name(&name), 443, None);
    assert!(
        !target.needs_address(),
        "no CIDR rule: denied before resolution"
    );
}

#[test]
fn early_deny_only_when_no_cidr_rule_allows_the_port() {
    let snapshot = compile(&document(
        TrafficPolicy::DefaultDeny,
        vec![
            rule("r-name", "api.example.com", &[443], &[]),
            rule("r-cidr", "203.0.113.0/24", &[443], &[]),
        ],
        Vec::new(),
    ))
    .unwrap();
    let name: Hostname = "other.example.com".parse().unwrap();
    let target = snapshot.decide_target(Destination::Name(&name), 8080, None);
    assert_eq!(
        target.final_decision().map(Decision::reason),
        Some(NoRuleForDestination)
    );
    let target = snapshot.decide_target(Destination::Name(&name), 443, None);
    assert!(target.needs_address(), "a CIDR rule may allow port 443");
    assert!(target.allowing_rule().is_none());
    let got = snapshot.decide_address(&target, "203.0.113.9".parse().unwrap(), 443, &own);
    assert_eq!(got.rule().map(|r| &*r.id), Some("r-cidr"));
    let api: Hostname = "api.example.com".parse().unwrap();
    let target = snapshot.decide_target(Destination::Name(&api), 8080, None);
    assert_eq!(
        target.final_decision().map(Decision::reason),
        Some(PortNotAllowed)
    );
    let target = snapshot.decide_target(Destination::Name(&api), 443, None);
    assert_eq!(target.allowing_rule().map(|r| &*r.id), Some("r-name"));
}

#[test]
fn operator_rule_beats_private_endpoint_and_is_allowed_under_default_deny() {
    let snapshot = compile(&document(
        TrafficPolicy::DefaultDeny,
        vec![operator(rule(
            "op-logs",
            "logs.platform.example.com",
            &[443],
            &[],
        ))],
        vec![endpoint("pe-1", "", &["*.platform.example.com"])],
    ))
    .unwrap();
    let cases = [
        case(
            "operator rule",
            "logs.platform.example.com",
            443,
            Allow,
            AllowedByOperatorRule,
            Some("op-logs"),
        ),
        case(
            "operator port miss falls to endpoint",
            "logs.platform.example.com",
            80,
            Endpoint("pe-1"),
            PrivateEndpoint,
            None,
        ),
        case(
            "endpoint",
            "other.platform.example.com",
            443,
            Endpoint("pe-1"),
            PrivateEndpoint,
            None,
        ),
    ];
    run(TrafficPolicy::DefaultDeny, &snapshot, &cases);
}

#[test]
fn endpoint_specificity() {
    let snapshot = compile(&document(
        TrafficPolicy::AllowAll,
        Vec::new(),
        vec![
            endpoint("pe-wide", "", &["*.example.com"]),
            endpoint("pe-narrow", "", &["*.eu.example.com", "x.example.com"]),
        ],
    ))
    .unwrap();
    let cases = [
        case(
            "longer suffix",
            "a.eu.example.com",
            443,
            Endpoint("pe-narrow"),
            PrivateEndpoint,
            None,
        ),
        case(
            "exact over wildcard",
            "x.example.com",
            443,
            Endpoint("pe-narrow"),
            PrivateEndpoint,
            None,
        ),
        case(
            "shorter suffix",
            "eu.example.com",
            443,
            Endpoint("pe-wide"),
            PrivateEndpoint,
            None,
        ),
        case("apex not routed", "example.com", 443, Allow, AllowAll, None),
    ];
    run(TrafficPolicy::AllowAll, &snapshot, &cases);
}

#[test]
fn check_answers_what_if() {
    let snapshot = fixture(TrafficPolicy::DefaultDeny);
    let name = |s: &str| s.parse::<Hostname>().unwrap();
    let www = name("www.example.com");
    let got = snapshot.check(Destination::Name(&www), 443, None);
    assert_eq!(
        (got.reason(), got.rule().map(|r| &*r.id)),
        (AllowedByRule, Some("r-wild"))
    );
    let unknown = name("unknown.example.net");
    let got = snapshot.check(Destination::Name(&unknown), 443, None);
    assert_eq!(got.reason(), NoRuleForDestination);
    let storage = name("storage.example.net");
    let got = snapshot.check(Destination::Name(&storage), 443, None);
    assert_eq!(got.reason(), PathNeedsTlsInspection);
    let got = snapshot.check(Destination::Ip("203.0.113.20".parse().unwrap()), 443, None);
    assert_eq!(got.rule().map(|r| &*r.id), Some("r-cidr28"));
    let got = snapshot.check(
        Destination::Ip("169.254.169.254".parse().unwrap()),
        80,
        None,
    );
    assert_eq!(got.reason(), special(AddrClass::Metadata));
    let kafka = name("b.kafka.example.com");
    let got = snapshot.check(Destination::Name(&kafka), 9092, None);
    assert_eq!(
        got.verdict(),
        &Verdict::PrivateEndpoint {
            endpoint_id: "pe-1".into()
        }
    );
    let report = fixture(TrafficPolicy::ReportOnly);
    let got = report.check(Destination::Name(&unknown), 443, None);
    assert_eq!(
        (got.reason(), got.would_deny()),
        (ReportOnly, Some(NoRuleForDestination))
    );
}

#[test]
fn targets_are_bound_to_their_snapshot_and_address() {
    let a = fixture(TrafficPolicy::AllowAll);
    let b = fixture(TrafficPolicy::AllowAll);
    let www: Hostname = "www.example.com".parse().unwrap();
    let target = a.decide_target(Destination::Name(&www), 443, None);
    let addr: IpAddr = PUBLIC.parse().unwrap();
    assert!(a.decide_address(&target, addr, 443, &own).is_allowed());
    let got = b.decide_address(&target, addr, 443, &own);
    assert_eq!(
        (got.verdict(), got.reason()),
        (&Verdict::Deny, SnapshotMismatch)
    );

    let literal: IpAddr = "203.0.113.20".parse().unwrap();
    let target = a.decide_target(Destination::Ip(literal), 443, None);
    assert!(a.decide_address(&target, literal, 443, &own).is_allowed());
    let got = a.decide_address(&target, addr, 443, &own);
    assert_eq!(
        (got.verdict(), got.reason()),
        (&Verdict::Deny, AddressNotTarget)
    );
}

#[test]
fn reasons_have_stable_names() {
    let names = [
        (AllowedByRule, "allowed_by_rule"),
        (AllowedByOperatorRule, "allowed_by_operator_rule"),
        (AllowAll, "allow_all"),
        (ReportOnly, "report_only"),
        (PrivateEndpoint, "private_endpoint"),
        (NoRuleForDestination, "no_rule_for_destination"),
        (PortNotAllowed, "port_not_allowed"),
        (PathNotAllowed, "path_not_allowed"),
        (PathNeedsTlsInspection, "path_needs_tls_inspection"),
        (special(AddrClass::Metadata), "special_address"),
        (IpLiteralNeedsCidrRule, "ip_literal_needs_cidr_rule"),
        (NoSnapshot, "no_snapshot"),
        (AddressNotTarget, "address_not_target"),
        (SnapshotMismatch, "snapshot_mismatch"),
    ];
    for (reason, name) in names {
        assert_eq!(reason.as_str(), name);
        assert!(!reason.description().is_empty());
    }
    assert_eq!(
        special(AddrClass::OwnAddress).to_string(),
        "special_address:own_address"
    );
    assert_eq!(
        special(AddrClass::Loopback).addr_class(),
        Some(AddrClass::Loopback)
    );
    assert_eq!(
        PathNeedsTlsInspection.description(),
        "path rule needs TLS inspection"
    );
}

#[test]
fn snapshot_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Snapshot>();
    assert_send_sync::<TargetDecision>();
    assert_send_sync::<Decision>();
    let snapshot = fixture(TrafficPolicy::DefaultDeny);
    assert_eq!(snapshot.version(), 7);
    assert_eq!(snapshot.cluster_id(), "cluster-1");
    assert_eq!(snapshot.traffic_policy(), TrafficPolicy::DefaultDeny);
    assert_eq!(snapshot.rule_count(), 14);
    assert_eq!(snapshot.endpoints().len(), 1);
    let pe = snapshot.endpoint("pe-1").unwrap();
    let backends: Vec<String> = pe.backends().iter().map(ToString::to_string).collect();
    assert_eq!(backends, ["10.9.9.9:9092"]);
    assert_eq!(pe.region(), "us-east-1");
    assert_eq!(pe.connection_id(), "pe-1-connection");
    assert_eq!(
        pe.endpoint_address().map(Hostname::as_str),
        Some("pe-1.endpoints.example.com")
    );
    assert_eq!(pe.domain_names().len(), 2);
}
