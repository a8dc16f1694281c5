use proptest::prelude::*;

use super::*;

#[test]
fn host_pattern_accepted() {
    let cases = [
        ("exact", "Example.COM.", "example.com", false),
        ("wildcard", "*.example.com", "*.example.com", true),
        (
            "wildcard normalised",
            "*.Example.COM.",
            "*.example.com",
            true,
        ),
        (
            "wildcard under registrable co.uk",
            "*.example.co.uk",
            "*.example.co.uk",
            true,
        ),
        (
            "wildcard under user github.io",
            "*.user.github.io",
            "*.user.github.io",
            true,
        ),
        (
            "wildcard under a bucket",
            "*.bucket.s3.amazonaws.com",
            "*.bucket.s3.amazonaws.com",
            true,
        ),
        (
            "wildcard under unknown TLD domain",
            "*.allowed.test",
            "*.allowed.test",
            true,
        ),
        (
            "wildcard IDN",
            "*.bücher.example",
            "*.xn--bcher-kva.example",
            true,
        ),
        ("exception rule www.ck", "*.www.ck", "*.www.ck", true),
        ("exact public suffix is harmless", "co.uk", "co.uk", false),
    ];
    for (name, input, want, wildcard) in cases {
        let got: HostPattern = input.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.to_string(), want, "{name}");
        assert_eq!(got.is_wildcard(), wildcard, "{name}");
    }
}

#[test]
fn host_pattern_refused() {
    let cases = [
        ("bare star", "*", "bare \"*\""),
        ("star dot", "*.", "bare \"*\""),
        ("over com", "*.com", "anyone can register a name under com"),
        (
            "over co.uk",
            "*.co.uk",
            "anyone can register a name under co.uk",
        ),
        (
            "over github.io",
            "*.github.io",
            "anyone can register a name under github.io",
        ),
        (
            "over s3",
            "*.s3.amazonaws.com",
            "anyone can register a name under s3.amazonaws.com",
        ),
        ("over uk", "*.UK.", "anyone can register a name under uk"),
        (
            "over unknown TLD",
            "*.test",
            "anyone can register a name under test",
        ),
        (
            "over PSL wildcard",
            "*.foo.ck",
            "anyone can register a name under foo.ck",
        ),
        (
            "over IDN suffix",
            "*.公司.cn",
            "anyone can register a name under xn--55qx5d.cn",
        ),
        ("star in second label", "a.*.com", "outside the first label"),
        (
            "double wildcard",
            "*.*.example.com",
            "outside the first label",
        ),
        ("star at end", "example.*", "outside the first label"),
        ("double star", "**.example.com", "partial wildcard"),
        ("partial", "foo*.example.com", "partial wildcard"),
        ("partial prefix", "*foo.example.com", "partial wildcard"),
        ("star only label no dot", "*example.com", "partial wildcard"),
        ("bad suffix", "*.exa_mple.com", "contains '_'"),
        ("ip suffix", "*.10.0.0.1", "looks like an IP address"),
        ("exact ip", "10.0.0.1", "looks like an IP address"),
        ("empty", "", "hostname is empty"),
    ];
    for (name, input, reason) in cases {
        let err = input.parse::<HostPattern>().expect_err(name).to_string();
        assert!(err.contains(reason), "{name}: {input:?}: {err}");
    }
}

#[test]
fn matching() {
    let wildcard: HostPattern = "*.example.com".parse().unwrap();
    let exact: HostPattern = "example.com".parse().unwrap();
    let cases = [
        ("example.com", false, true),
        ("www.example.com", true, false),
        ("a.b.c.example.com", true, false),
        ("badexample.com", false, false),
        ("example.com.evil.net", false, false),
        ("example.org", false, false),
    ];
    for (name, w, e) in cases {
        let n: Hostname = name.parse().unwrap();
        assert_eq!(wildcard.matches(&n), w, "wildcard {name}");
        assert_eq!(exact.matches(&n), e, "exact {name}");
    }
    assert!(exact.specificity() > wildcard.specificity());
    let longer: HostPattern = "*.api.example.com".parse().unwrap();
    assert!(longer.specificity() > wildcard.specificity());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn never_panics_and_round_trips(s in "\\*?\\.?\\PC{0,60}") {
        if let Ok(p) = s.parse::<HostPattern>() {
            prop_assert_eq!(p.to_string().parse::<HostPattern>(), Ok(p.clone()));
        }
    }

    #[test]
    fn wildcard_matches_below_never_apex(
        suffix in "[a-z0-9]{1,10}\\.(example|corp)\\.(com|net)",
        sub in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,2}",
    ) {
        let p: HostPattern = format!("*.{suffix}").parse().unwrap();
        let apex: Hostname = suffix.parse().unwrap();
        let below: Hostname = format!("{sub}.{suffix}").parse().unwrap();
        prop_assert!(!p.matches(&apex));
        prop_assert!(p.matches(&below));
    }
}
