use std::net::IpAddr;

use perimeter_policy::{
    AddrClass, Destination, Hostname, PolicyDocument, Reason, RuleDoc, RuleType, Snapshot,
    TrafficPolicy, compile,
};

use super::*;

fn rule(name: &str, rule_type: RuleType, destination: &str, ports: &[u16]) -> RuleDoc {
    RuleDoc {
        id: format!("id-{name}"),
        name: name.to_owned(),
        rule_type,
        destination: destination.to_owned(),
        ports: ports.to_vec(),
        paths: Vec::new(),
        crl_managed: false,
    }
}

fn snapshot(policy: TrafficPolicy) -> Snapshot {
    compile(&PolicyDocument {
        format: 1,
        version: 3,
        cluster_id: "cluster-1".to_owned(),
        traffic_policy: policy,
        rules: vec![
            rule("docs-net", RuleType::Cidr, "203.0.113.0/24", &[443]),
            rule("api", RuleType::Fqdn, "api.example.com", &[443]),
            rule("loopback-8080", RuleType::Cidr, "127.0.0.0/8", &[8080]),
        ],
        ingress: Default::default(),
        private_endpoints: Vec::new(),
        tls_inspection: None,
    })
    .expect("the fixture compiles")
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

struct Case {
    name: &'static str,
    policy: TrafficPolicy,
    dest: &'static str,
    port: u16,
    /// Addresses the name resolves to; `None`: not known.
    resolved: Option<&'static [&'static str]>,
    allowed: bool,
    reason: Reason,
    rule: Option<&'static str>,
    /// The dialled address, if any.
    dialled: Option<&'static str>,
    /// Whether the answer lists addresses.
    listed: bool,
}

#[test]
fn verdicts_follow_the_gateways_dial_step() {
    use TrafficPolicy::{AllowAll, DefaultDeny};
    let cases = [
        Case {
            name: "a name a CIDR rule admits once resolved",
            policy: DefaultDeny,
            dest: "svc.example.org",
            port: 443,
            resolved: Some(&["203.0.113.7"]),
            allowed: true,
            reason: Reason::AllowedByRule,
            rule: Some("docs-net"),
            dialled: Some("203.0.113.7"),
            listed: true,
        },
        Case {
            name: "the first allowed address wins, earlier denied ones are listed",
            policy: DefaultDeny,
            dest: "svc.example.org",
            port: 443,
            resolved: Some(&["198.51.100.1", "203.0.113.9", "203.0.113.10"]),
            allowed: true,
            reason: Reason::AllowedByRule,
            rule: Some("docs-net"),
            dialled: Some("203.0.113.9"),
            listed: true,
        },
        Case {
            name: "no address allowed: the reason of the first",
            policy: DefaultDeny,
            dest: "svc.example.org",
            port: 443,
            resolved: Some(&["198.51.100.1", "127.0.0.1"]),
            allowed: false,
            reason: Reason::NoRuleForDestination,
            rule: None,
            dialled: None,
            listed: true,
        },
        Case {
            name: "an FQDN rule does not make a loopback address dialable",
            policy: DefaultDeny,
            dest: "api.example.com",
            port: 443,
            resolved: Some(&["127.0.0.1"]),
            allowed: false,
            reason: Reason::SpecialAddress(AddrClass::Loopback),
            rule: None,
            dialled: None,
            listed: true,
        },
        Case {
            name: "the address guard holds under ALLOW_ALL",
            policy: AllowAll,
            dest: "anything.example.net",
            port: 443,
            resolved: Some(&["10.1.2.3"]),
            allowed: false,
            reason: Reason::SpecialAddress(AddrClass::Private),
            rule: None,
            dialled: None,
            listed: true,
        },
        Case {
            name: "a CIDR rule naming loopback makes it dialable",
            policy: DefaultDeny,
            dest: "local.example.net",
            port: 8080,
            resolved: Some(&["127.0.0.1"]),
            allowed: true,
            reason: Reason::AllowedByRule,
            rule: Some("loopback-8080"),
            dialled: Some("127.0.0.1"),
            listed: true,
        },
        Case {
            name: "no rule on the port at all: decided before resolution",
            policy: DefaultDeny,
            dest: "svc.example.org",
            port: 80,
            resolved: None,
            allowed: false,
            reason: Reason::NoRuleForDestination,
            rule: None,
            dialled: None,
            listed: false,
        },
        Case {
            name: "a name without addresses: the FQDN rules' word",
            policy: DefaultDeny,
            dest: "api.example.com",
            port: 443,
            resolved: None,
            allowed: true,
            reason: Reason::AllowedByRule,
            rule: Some("api"),
            dialled: None,
            listed: false,
        },
        Case {
            name: "an IP literal is judged as itself",
            policy: DefaultDeny,
            dest: "203.0.113.5",
            port: 443,
            resolved: None,
            allowed: true,
            reason: Reason::AllowedByRule,
            rule: Some("docs-net"),
            dialled: None,
            listed: false,
        },
    ];
    for c in cases {
        let snap = snapshot(c.policy);
        let name: Option<Hostname> = c
            .dest
            .parse()
            .ok()
            .filter(|_| c.dest.parse::<IpAddr>().is_err());
        let dest = match &name {
            Some(h) => Destination::Name(h),
            None => Destination::Ip(c.dest.parse().unwrap()),
        };
        let resolved = c.resolved.map(ips);
        if c.resolved.is_some() {
            assert!(
                needs_resolution(&snap, dest, c.port, None),
                "{}: the gateways resolve it",
                c.name
            );
        }
        let out = gateway_verdict(&snap, dest, c.port, None, resolved.as_deref());
        assert_eq!(out.decision.is_allowed(), c.allowed, "{}: {out:?}", c.name);
        assert_eq!(out.decision.reason(), c.reason, "{}: {out:?}", c.name);
        assert_eq!(
            out.decision.rule().map(|r| r.name.to_string()).as_deref(),
            c.rule,
            "{}: {out:?}",
            c.name
        );
        assert_eq!(out.addresses.is_some(), c.listed, "{}: {out:?}", c.name);
        let addresses = out.addresses.unwrap_or_default();
        let dialled: Vec<String> = addresses
            .iter()
            .filter(|a| a.dialled)
            .map(|a| a.addr.to_string())
            .collect();
        assert_eq!(
            dialled,
            c.dialled.into_iter().map(str::to_owned).collect::<Vec<_>>(),
            "{}",
            c.name
        );
        if let Some(r) = c.resolved {
            let order: Vec<String> = addresses.iter().map(|a| a.addr.to_string()).collect();
            assert_eq!(order, r, "{}: every address, in order", c.name);
        }
    }
}

#[test]
fn a_name_settled_by_its_target_is_not_resolved() {
    let snap = snapshot(TrafficPolicy::DefaultDeny);
    let name: Hostname = "svc.example.org".parse().unwrap();
    // No rule on port 80: denied before any address.
    assert!(!needs_resolution(&snap, Destination::Name(&name), 80, None));
    // A CIDR rule on 443 may admit it per address.
    assert!(needs_resolution(&snap, Destination::Name(&name), 443, None));
    // Literals are never resolved.
    let ip: IpAddr = "203.0.113.5".parse().unwrap();
    assert!(!needs_resolution(&snap, Destination::Ip(ip), 443, None));
}

#[test]
fn never_inspected_is_the_gateways_connect_refusal() {
    use perimeter_policy::TlsInspectionDoc;
    let mut paths = rule("pinned", RuleType::Fqdn, "pinned.example.com", &[443]);
    paths.paths = vec!["/api/*".to_owned()];
    let mut wild = rule("bank", RuleType::Fqdn, "*.bank.example", &[443]);
    wild.paths = vec!["/v1/*".to_owned()];
    let open = rule("open", RuleType::Fqdn, "open.example.com", &[443]);
    let mut inspected = paths.clone();
    inspected.name = "inspected".to_owned();
    inspected.id = "id-inspected".to_owned();
    inspected.destination = "repo.example.com".to_owned();
    let compiled = |policy, inspection: Option<TlsInspectionDoc>| {
        compile(&PolicyDocument {
            format: 1,
            version: 3,
            cluster_id: "cluster-1".to_owned(),
            traffic_policy: policy,
            rules: vec![paths.clone(), wild.clone(), open.clone(), inspected.clone()],
            ingress: Default::default(),
            private_endpoints: Vec::new(),
            tls_inspection: inspection,
        })
        .expect("compiles")
    };
    let on = || {
        Some(TlsInspectionDoc {
            // Only the PEM labels are checked when compiling: the gateways sign with them.
            ca_certificate: "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
                .to_owned(),
            ca_key: "-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n".to_owned(),
            never_inspect: vec![
                "pinned.example.com".to_owned(),
                "*.bank.example".to_owned(),
                "open.example.com".to_owned(),
            ],
        })
    };
    let name = |n: &str| -> Hostname { n.parse().unwrap() };
    let deny = compiled(TrafficPolicy::DefaultDeny, on());
    for (host, port, refused) in [
        ("pinned.example.com", 443, true),
        ("eu.bank.example", 443, true),
        // Its rule has no paths: nothing to inspect.
        ("open.example.com", 443, false),
        // Inspected, not on the list.
        ("repo.example.com", 443, false),
        // No rule on that port: denied for that, not for inspection.
        ("pinned.example.com", 8443, false),
    ] {
        let h = name(host);
        assert_eq!(
            never_inspected(&deny, Destination::Name(&h), port),
            refused,
            "{host}:{port}"
        );
    }
    let h = name("pinned.example.com");
    // Inspection off, or ALLOW_ALL (nothing inspected): never refused for it.
    let off = compiled(TrafficPolicy::DefaultDeny, None);
    assert!(!never_inspected(&off, Destination::Name(&h), 443));
    let all = compiled(TrafficPolicy::AllowAll, on());
    assert!(!never_inspected(&all, Destination::Name(&h), 443));
    let ip: IpAddr = "203.0.113.5".parse().unwrap();
    assert!(!never_inspected(&deny, Destination::Ip(ip), 443));
}
