use super::*;

fn rule<'a>(
    rule_type: &'a str,
    destination: &'a str,
    ports: Option<&'a [i64]>,
    paths: Option<&'a [String]>,
) -> RuleInput<'a> {
    RuleInput {
        rule_type,
        destination,
        ports,
        paths,
    }
}

#[test]
fn rule_type_parse() {
    assert_eq!("FQDN".parse(), Ok(RuleType::Fqdn));
    assert_eq!("cidr".parse(), Ok(RuleType::Cidr));
    assert_eq!(RuleType::Fqdn.as_str(), "FQDN");
    assert_eq!(RuleType::Cidr.as_str(), "CIDR");
    assert!("HOST".parse::<RuleType>().is_err());
}

#[test]
fn valid_rules() {
    let paths = vec![
        "/v1/*".to_owned(),
        "/v1/%2e/*".to_owned(),
        "/health".to_owned(),
    ];
    let got = validate_rule(&rule(
        "FQDN",
        "*.Example.COM.",
        Some(&[443, 80, 443]),
        Some(&paths),
    ))
    .unwrap();
    assert_eq!(
        got,
        ValidatedRule {
            rule_type: RuleType::Fqdn,
            destination: RuleDestination::Host("*.example.com".parse().unwrap()),
            ports: vec![80, 443],
            paths: vec!["/v1/*".parse().unwrap(), "/health".parse().unwrap()],
            warnings: vec![],
        }
    );

    let got = validate_rule(&rule("cidr", "10.0.0.0/8", Some(&[5432]), Some(&[]))).unwrap();
    assert_eq!(got.rule_type, RuleType::Cidr);
    assert_eq!(got.destination.to_string(), "10.0.0.0/8");
    assert!(got.paths.is_empty() && got.warnings.is_empty());

    let got = validate_rule(&rule("CIDR", "2001:db8::1", Some(&[443]), None)).unwrap();
    assert_eq!(got.destination.to_string(), "2001:db8::1/128");
}

#[test]
fn warnings() {
    let got = validate_rule(&rule("FQDN", "Example.com", None, None)).unwrap();
    assert_eq!(got.destination.to_string(), "example.com");
    assert_eq!(got.warnings.len(), 2, "{:?}", got.warnings);
    assert!(
        got.warnings[0].contains("allows every port"),
        "{:?}",
        got.warnings
    );
    assert!(got.warnings[0].contains("\"ports\""), "{:?}", got.warnings);
    assert!(
        got.warnings[1].contains("www.example.com"),
        "{:?}",
        got.warnings
    );
    assert!(
        got.warnings[1].contains("*.example.com"),
        "{:?}",
        got.warnings
    );

    let got = validate_rule(&rule("CIDR", "10.0.0.0/8", Some(&[]), None)).unwrap();
    assert_eq!(got.warnings.len(), 1);
    assert!(got.warnings[0].contains("allows every port"));

    let got = validate_rule(&rule("FQDN", "*.example.com", Some(&[443]), None)).unwrap();
    assert!(got.warnings.is_empty());
}

#[test]
fn invalid_rules() {
    let one_path = vec!["/x".to_owned()];
    let bad_paths = vec!["/ok".to_owned(), "/a/../../b".to_owned()];
    let star_path = vec!["/a*".to_owned()];
    let many_paths = vec!["/x".to_owned(); 101];
    let long_path = vec![format!("/{}", "a".repeat(2048))];
    let long_dest = format!("{}.com", "a.".repeat(130));
    let cases: Vec<(&str, RuleInput<'_>, &str, &str)> = vec![
        (
            "unknown type",
            rule("HOST", "example.com", None, None),
            "type",
            "use \"FQDN\" or \"CIDR\"",
        ),
        (
            "empty destination",
            rule("FQDN", "", None, None),
            "destination",
            "destination is empty",
        ),
        (
            "long destination",
            rule("FQDN", &long_dest, None, None),
            "destination",
            "at most 253",
        ),
        (
            "FQDN with IP",
            rule("FQDN", "10.0.0.1", None, None),
            "destination",
            "use type CIDR with destination 10.0.0.1/32",
        ),
        (
            "FQDN with v6",
            rule("FQDN", "[2001:db8::1]", None, None),
            "destination",
            "use type CIDR with destination 2001:db8::1/128",
        ),
        (
            "FQDN with CIDR",
            rule("FQDN", "10.0.0.0/8", None, None),
            "destination",
            "use type CIDR with destination 10.0.0.0/8",
        ),
        (
            "FQDN with bad CIDR",
            rule("FQDN", "10.0.0.1/8", None, None),
            "destination",
            "use type CIDR (and note: 10.0.0.1/8 has host bits set; use 10.0.0.0/8)",
        ),
        (
            "FQDN with decimal IP",
            rule("FQDN", "2130706433", None, None),
            "destination",
            "single number",
        ),
        (
            "FQDN with short IP",
            rule("FQDN", "127.1", None, None),
            "destination",
            "shortened",
        ),
        (
            "FQDN wildcard over PSL",
            rule("FQDN", "*.co.uk", None, None),
            "destination",
            "anyone can register a name under co.uk",
        ),
        (
            "FQDN underscore",
            rule("FQDN", "a_b.example.com", None, None),
            "destination",
            "'_'",
        ),
        (
            "CIDR host bits",
            rule("CIDR", "10.0.0.1/8", None, None),
            "destination",
            "use 10.0.0.0/8",
        ),
        (
            "CIDR with name",
            rule("CIDR", "example.com", None, None),
            "destination",
            "not an IP address",
        ),
        (
            "CIDR with paths",
            rule("CIDR", "10.0.0.0/8", None, Some(&one_path)),
            "paths",
            "CIDR rules carry no paths",
        ),
        (
            "port zero",
            rule("FQDN", "*.example.com", Some(&[443, 0]), None),
            "ports[1]",
            "1-65535",
        ),
        (
            "port too big",
            rule("FQDN", "*.example.com", Some(&[65536]), None),
            "ports[0]",
            "1-65535",
        ),
        (
            "bad path",
            rule("FQDN", "*.example.com", None, Some(&bad_paths)),
            "paths[1]",
            "climbs above the root",
        ),
        (
            "star path",
            rule("FQDN", "*.example.com", None, Some(&star_path)),
            "paths[0]",
            "'*' other than",
        ),
        (
            "too many paths",
            rule("FQDN", "*.example.com", None, Some(&many_paths)),
            "paths",
            "at most 100",
        ),
        (
            "long path",
            rule("FQDN", "*.example.com", None, Some(&long_path)),
            "paths[0]",
            "at most 2048",
        ),
    ];
    for (name, input, field, reason) in cases {
        let err = validate_rule(&input).expect_err(name);
        assert_eq!(err.field, field, "{name}: {err}");
        assert!(err.message.contains(reason), "{name}: {}", err.message);
    }
}

#[test]
fn stored_values_read_back_only_in_canonical_form() {
    let d = RuleDestination::parse_canonical(RuleType::Fqdn, "*.example.com").unwrap();
    assert_eq!(d.rule_type(), RuleType::Fqdn);
    assert_eq!(d.to_string(), "*.example.com");
    assert!(RuleDestination::parse_canonical(RuleType::Cidr, "10.0.0.0/8").is_ok());
    for (t, bad) in [
        (RuleType::Fqdn, "*.Example.com"),
        (RuleType::Fqdn, "example.com."),
        (RuleType::Fqdn, "10.0.0.0/8"),
        (RuleType::Cidr, "10.0.0.1"),
        (RuleType::Cidr, "example.com"),
    ] {
        assert!(
            RuleDestination::parse_canonical(t, bad).is_err(),
            "{t} {bad}"
        );
    }
    assert!(parse_canonical_path("/v1/*").is_ok());
    assert!(matches!(
        parse_canonical_path("/v1/%2e/*"),
        Err(crate::PathPatternError::NotCanonical(_))
    ));
}
