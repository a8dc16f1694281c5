use proptest::prelude::*;

use super::*;

#[test]
fn hostname_accepted() {
    let cases = [
        (
            "lower-cased, trailing dot removed",
            "Example.COM.",
            "example.com",
        ),
        ("plain", "example.com", "example.com"),
        ("deep", "a.b-c.d1.example.com", "a.b-c.d1.example.com"),
        ("IDN to A-labels", "bücher.example", "xn--bcher-kva.example"),
        ("IDN upper case", "BÜCHER.example", "xn--bcher-kva.example"),
        (
            "A-label kept",
            "xn--bcher-kva.example",
            "xn--bcher-kva.example",
        ),
        ("non-transitional sharp s", "faß.de", "xn--fa-hia.de"),
        ("full-width dot mapped", "example\u{3002}com", "example.com"),
        (
            "numeric labels except the last",
            "1.2.3.example",
            "1.2.3.example",
        ),
        (
            "digit-leading TLD-like last label",
            "example.3com",
            "example.3com",
        ),
        ("hyphens inside", "a--b.example.com", "a--b.example.com"),
        (
            "63-char label",
            &format!("{}.com", "a".repeat(63)),
            &format!("{}.com", "a".repeat(63)),
        ),
    ];
    for (name, input, want) in cases {
        let got: Hostname = input
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {input}: {e}"));
        assert_eq!(got.as_str(), want, "{name}");
        assert_eq!(got.to_string(), want, "{name}");
    }
}

#[test]
fn homograph_is_a_distinct_name() {
    // The first letter is CYRILLIC SMALL LETTER A.
    let spoof: Hostname = "\u{0430}pple.com".parse().unwrap();
    let real: Hostname = "apple.com".parse().unwrap();
    assert_ne!(spoof, real);
    assert!(spoof.as_str().starts_with("xn--"), "{spoof}");
    assert!(spoof.as_str().ends_with(".com"), "{spoof}");
}

#[test]
fn hostname_refused() {
    let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", "".into(), "hostname is empty"),
        ("only a dot", ".".into(), "hostname is empty"),
        ("two trailing dots", "example.com..".into(), "empty label"),
        ("leading dot", ".example.com".into(), "empty label"),
        ("double dot", "a..example.com".into(), "empty label"),
        ("underscore", "_dmarc.example.com".into(), "contains '_'"),
        ("star", "*.example.com".into(), "contains '*'"),
        ("space", "exa mple.com".into(), "contains ' '"),
        ("port", "example.com:443".into(), "no port"),
        ("url", "https://example.com/".into(), "contains ':'"),
        ("path", "example.com/x".into(), "without scheme or path"),
        ("bracketed v6", "[::1]".into(), "CIDR rules"),
        (
            "leading hyphen",
            "-a.example.com".into(),
            "starts or ends with '-'",
        ),
        (
            "trailing hyphen",
            "a-.example.com".into(),
            "starts or ends with '-'",
        ),
        (
            "label too long",
            format!("{}.com", "a".repeat(64)),
            "at most 63",
        ),
        ("name too long", long_name, "at most 253"),
        ("single label", "localhost".into(), "single label"),
        (
            "single label suggestion",
            "intranet".into(),
            "intranet.example.com",
        ),
        (
            "dotted quad",
            "127.0.0.1".into(),
            "looks like an IP address",
        ),
        ("decimal", "2130706433".into(), "looks like an IP address"),
        ("hex last", "0x7f.1".into(), "looks like an IP address"),
        ("hex tld", "a.0x7f".into(), "looks like an IP address"),
        (
            "bad punycode",
            "xn--a.example".into(),
            "not a valid internationalised",
        ),
        (
            "disallowed code point",
            "a\u{2028}b.example".into(),
            "whitespace",
        ),
        ("NUL", "a\0.example".into(), "control"),
    ];
    for (name, input, reason) in cases {
        let err = input.parse::<Hostname>().expect_err(name).to_string();
        assert!(err.contains(reason), "{name}: {input:?}: {err}");
    }
}

#[test]
fn is_below() {
    let p: Hostname = "example.com".parse().unwrap();
    for (name, below) in [
        ("www.example.com", true),
        ("a.b.example.com", true),
        ("example.com", false),
        ("badexample.com", false),
        ("example.com.evil.net", false),
    ] {
        let n: Hostname = name.parse().unwrap();
        assert_eq!(n.is_below(&p), below, "{name}");
    }
}

#[test]
fn serde_as_string() {
    let h: Hostname = "Example.com".parse().unwrap();
    let de = serde::de::value::StrDeserializer::<serde::de::value::Error>::new("Example.COM.");
    let back: Hostname = serde::Deserialize::deserialize(de).unwrap();
    assert_eq!(back, h);
    let bad = serde::de::value::StrDeserializer::<serde::de::value::Error>::new("a_b.com");
    assert!(<Hostname as serde::Deserialize>::deserialize(bad).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn never_panics_and_output_is_ldh(s in "\\PC{0,80}") {
        if let Ok(h) = s.parse::<Hostname>() {
            prop_assert!(h.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'));
            prop_assert_eq!(h.as_str().parse::<Hostname>(), Ok(h.clone()));
        }
    }

    #[test]
    fn valid_shapes_are_idempotent(s in "[a-zA-Z0-9ü-]{1,20}(\\.[a-zA-Z0-9ü-]{1,20}){1,4}\\.?") {
        if let Ok(h) = s.parse::<Hostname>() {
            prop_assert_eq!(h.to_string().parse::<Hostname>(), Ok(h.clone()));
            prop_assert_eq!(h.as_str(), h.as_str().to_ascii_lowercase());
        }
    }
}

proptest::proptest! {
    /// The ASCII fast path gives what UTS-46 gives.
    #[test]
    fn the_ascii_fast_path_is_uts46(name in "[a-zA-Z0-9-]{1,12}(\\.[a-zA-Z0-9-]{1,12}){0,3}") {
        proptest::prop_assume!(super::ldh_without_a_labels(&name));
        proptest::prop_assert_eq!(Ok(name.to_ascii_lowercase()), super::uts46_to_ascii(&name));
    }
}

#[test]
fn a_labels_take_the_uts46_path() {
    assert!(!super::ldh_without_a_labels("xn--llowed-2nf.test"));
    assert!(!super::ldh_without_a_labels("a.XN--llowed-2nf.test"));
    assert!(super::ldh_without_a_labels("Allowed.test"));
    assert_eq!(
        "xn--llowed-2nf.test".parse::<Hostname>().unwrap().as_str(),
        "xn--llowed-2nf.test"
    );
    assert!(
        "xn--zz.test".parse::<Hostname>().is_err(),
        "an invalid A-label is refused"
    );
}
