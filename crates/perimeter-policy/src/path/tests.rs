use proptest::prelude::*;

use super::*;

#[test]
fn normalize_path_accepted() {
    let cases = [
        ("root", "/", "/"),
        ("plain", "/v1/objects", "/v1/objects"),
        ("encoded dot-dot", "/a/%2e%2e/b", "/b"),
        ("encoded dot-dot upper", "/a/%2E%2E/b", "/b"),
        ("dot-dot", "/a/b/../c", "/a/c"),
        ("dot", "/a/./b", "/a/b"),
        ("trailing dot", "/a/.", "/a/"),
        ("trailing dot-dot", "/a/b/..", "/a/"),
        ("dot-dot to root", "/a/..", "/"),
        ("double slash kept", "/a//b", "/a//b"),
        ("double slash then dot-dot", "/a//../b", "/a/b"),
        ("params kept", "/a;v=1/b;x", "/a;v=1/b;x"),
        ("case kept", "/A/b/C", "/A/b/C"),
        ("unreserved decoded", "/%7Euser/%41%62%2d%5f", "/~user/Ab-_"),
        (
            "reserved kept, hex upper-cased",
            "/a%3fb%2a%20c",
            "/a%3Fb%2A%20c",
        ),
        ("percent sign kept", "/100%25", "/100%25"),
        ("query dropped", "/a/../b?x=/../../y", "/b"),
        ("empty query dropped", "/a?", "/a"),
        ("non-ASCII encoded", "/bücher", "/b%C3%BCcher"),
        ("dots in names kept", "/a/.b/..c/...", "/a/.b/..c/..."),
        ("encoded control char kept encoded", "/a%0a", "/a%0A"),
    ];
    for (name, input, want) in cases {
        assert_eq!(
            normalize_path(input).as_deref(),
            Ok(want),
            "{name}: {input}"
        );
    }
}

#[test]
fn normalize_path_refused() {
    let cases = [
        ("empty", "", "path is empty"),
        ("query only", "?a", "path is empty"),
        ("relative", "a/b", "does not start with '/'"),
        ("absolute URI", "http://x/a", "does not start with '/'"),
        ("above root", "/a/../../b", "climbs above the root"),
        ("above root at once", "/..", "climbs above the root"),
        (
            "above root encoded",
            "/%2e%2e/etc/passwd",
            "climbs above the root",
        ),
        ("encoded slash", "/a%2Fb", "encoded slash (%2F)"),
        ("encoded slash lower", "/a%2fb", "encoded slash (%2F)"),
        ("encoded backslash", "/a%5cb", "encoded backslash (%5C)"),
        ("encoded NUL", "/a%00", "encoded NUL (%00)"),
        ("short escape", "/a%2", "invalid percent-escape"),
        ("bad escape", "/a%zz", "invalid percent-escape"),
        ("escape on multibyte", "/a%ü1", "invalid percent-escape"),
        ("backslash", "/a\\..\\b", "backslash"),
        ("space", "/a b", "space"),
        ("tab", "/a\tb", "space"),
        ("control", "/a\u{1}", "control"),
        ("fragment", "/a#frag", "'#'"),
        (
            "dot-dot with params",
            "/a/..;x/b",
            "dot-segment with parameters",
        ),
        ("dot with params", "/a/.;/b", "dot-segment with parameters"),
        (
            "encoded dot-dot with params",
            "/a/%2e%2e;/b",
            "dot-segment with parameters",
        ),
    ];
    for (name, input, reason) in cases {
        let err = normalize_path(input).expect_err(name).to_string();
        assert!(err.contains(reason), "{name}: {input:?}: {err}");
    }
}

#[test]
fn path_pattern_table() {
    let ok = [
        (
            "exact",
            "/v1/objects",
            PathPattern::Exact("/v1/objects".into()),
            "/v1/objects",
        ),
        (
            "prefix",
            "/v1/*",
            PathPattern::Prefix("/v1/".into()),
            "/v1/*",
        ),
        ("root prefix", "/*", PathPattern::Prefix("/".into()), "/*"),
        (
            "normalised prefix",
            "/a/%2e%2e/v1/*",
            PathPattern::Prefix("/v1/".into()),
            "/v1/*",
        ),
        (
            "normalised exact",
            "/%7Eu/./x",
            PathPattern::Exact("/~u/x".into()),
            "/~u/x",
        ),
    ];
    for (name, input, want, shown) in ok {
        let got: PathPattern = input.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
        assert_eq!(got.to_string(), shown, "{name}");
    }
    let bad = [
        ("star inside", "/v1/*/x", "'*' other than"),
        ("partial star", "/v1*", "'*' other than"),
        ("star no slash", "/v1/x*", "'*' other than"),
        ("bare star", "*", "'*' other than"),
        ("query", "/v1?x", "'?' or '#'"),
        ("fragment", "/v1#x", "'?' or '#'"),
        ("relative", "v1/*", "does not start with '/'"),
        ("whitespace", "/v 1", "space"),
        ("above root", "/../*", "climbs above the root"),
        ("encoded slash", "/a%2F/*", "%2F"),
    ];
    for (name, input, reason) in bad {
        let err = input.parse::<PathPattern>().expect_err(name).to_string();
        assert!(err.contains(reason), "{name}: {input:?}: {err}");
    }
}

#[test]
fn path_pattern_matching() {
    let prefix: PathPattern = "/v1/*".parse().unwrap();
    let exact: PathPattern = "/v1".parse().unwrap();
    let root: PathPattern = "/*".parse().unwrap();
    let cases = [
        ("/v1", false, true),
        ("/v1/", true, false),
        ("/v1/a/b", true, false),
        ("/v10", false, false),
        ("/v2/v1/", false, false),
        ("/V1/a", false, false),
    ];
    for (path, p, e) in cases {
        assert_eq!(prefix.matches(path), p, "prefix {path}");
        assert_eq!(exact.matches(path), e, "exact {path}");
        assert!(root.matches(path), "root {path}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(800))]

    #[test]
    fn normalize_never_panics(s in "\\PC{0,60}") {
        let _ = normalize_path(&s);
        let _ = s.parse::<PathPattern>();
    }

    #[test]
    fn normalize_is_idempotent_and_dot_free(s in "/([a-zA-Z.;~_-]|%2[eE]|%[0-9a-fA-F]{2}|/|\\.\\.|ü){0,40}(\\?.*)?") {
        if let Ok(p) = normalize_path(&s) {
            prop_assert!(p.starts_with('/'));
            prop_assert!(!p.contains("/./") && !p.contains("/../"), "{}", p);
            prop_assert!(!p.ends_with("/.") && !p.ends_with("/.."), "{}", p);
            prop_assert_eq!(normalize_path(&p), Ok(p.clone()));
        }
    }

    #[test]
    fn pattern_round_trips(s in "/([a-z.]|%2[eE]|/|\\.\\.){0,20}(/\\*)?") {
        if let Ok(p) = s.parse::<PathPattern>() {
            prop_assert_eq!(p.to_string().parse::<PathPattern>(), Ok(p.clone()));
        }
    }
}
