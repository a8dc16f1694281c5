use proptest::prelude::*;

use super::*;

/// Bytes biased towards the characters the parsers care about.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"aAzZ09.-_*/%2fFeE:[]x\\;?#\n ,\x00\xc3\xbc{}\"".to_vec();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(proptest::sample::select(alphabet), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fuzz_targets_never_panic(data in interesting_bytes()) {
        fuzz_hostname(&data);
        fuzz_host_pattern(&data);
        fuzz_cidr(&data);
        fuzz_ip_literal(&data);
        fuzz_path(&data);
        fuzz_rule_json(&data);
    }
}

/// Rule-shaped inputs, so that `fuzz_rule_json` reaches its success path often.
fn rule_text() -> impl Strategy<Value = String> {
    let name = "(\\*\\.)?([a-zA-Z0-9ü]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?\\.){1,3}[a-zA-Z]{2,6}\\.?";
    let v4 = (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, len)| {
        let net = ipnet::Ipv4Net::new(a.into(), len).map(|n| n.trunc());
        net.map_or_else(|_| "0.0.0.0/0".to_owned(), |n| n.to_string())
    });
    let v6 = (any::<u128>(), 0u8..=128).prop_map(|(a, len)| {
        let net = ipnet::Ipv6Net::new(a.into(), len).map(|n| n.trunc());
        net.map_or_else(|_| "::/0".to_owned(), |n| n.to_string())
    });
    let fqdn = (
        proptest::sample::select(vec!["FQDN", "fqdn"]),
        prop_oneof![6 => name.boxed(), 1 => "[0-9a-f.:/]{1,20}".boxed(), 1 => "\\PC{0,20}".boxed()],
    );
    let cidr = (
        proptest::sample::select(vec!["CIDR", "Cidr"]),
        prop_oneof![3 => v4.boxed(), 3 => v6.boxed(), 1 => "[0-9a-f.:/]{1,20}".boxed()],
    );
    let other = (Just("HOST"), "\\PC{0,20}");
    let typed = prop_oneof![4 => fqdn.boxed(), 3 => cidr.boxed(), 1 => other.boxed()];
    let ports = prop_oneof![
        1 => Just("-".to_owned()),
        4 => "([1-9][0-9]{0,3}, ?){0,3}[1-9][0-9]{0,3}",
        1 => "(-?[0-9]{1,6},){0,4}[0-9]{0,5}",
    ];
    let path = prop_oneof![
        6 => "(/[a-z~]{1,5}|/%7[eE]|/\\.){1,6}(/\\*)?",
        1 => "(/[a-z]{1,3}|/\\.\\.|/){1,6}(/\\*)?",
        1 => "/([a-z.~;]|%2[eEfF]|%[0-9a-fA-F]{2}|/){0,12}(/\\*)?",
    ];
    let paths = proptest::collection::vec(path, 0..3);
    (typed, ports, paths, any::<bool>()).prop_map(|((t, d), p, paths, json)| {
        if json {
            let paths: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
            return format!(
                r#"{{"type":"{t}","destination":{d:?},"ports":[{p}],"paths":[{}]}}"#,
                paths.join(",")
            );
        }
        let mut text = format!("{t}\n{d}\n{p}");
        for path in paths {
            text.push('\n');
            text.push_str(&path);
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzz_rule_json_on_rule_shaped_input(text in rule_text()) {
        fuzz_rule_json(text.as_bytes());
        let destination = if text.starts_with('{') {
            split_json(&text).destination
        } else {
            text.split('\n').nth(1).unwrap_or_default()
        };
        fuzz_hostname(destination.as_bytes());
        fuzz_host_pattern(destination.as_bytes());
        fuzz_cidr(destination.as_bytes());
        fuzz_ip_literal(destination.as_bytes());
    }
}

#[test]
fn fuzz_rule_json_seeds() {
    for seed in [
        "FQDN\nExample.COM.\n443,80,443\n/v1/*\n/v1/%7euser",
        "CIDR\n10.0.0.0/8\n-",
        "fqdn\n*.bücher.example\n1,65535",
        r#"{"type":"FQDN","destination":"*.Example.com","ports":[443, 80],"paths":["/v1/*","/a/../b"]}"#,
        r#"{"type": "CIDR", "destination": "10.0.0.0/8", "ports": []}"#,
        r#"{"type":"FQDN","destination":"#,
        "CIDR\n2001:db8::/32\n22\n/x",
    ] {
        fuzz_rule_json(seed.as_bytes());
    }
    let fields = split_json(
        r#"{"type":"FQDN", "destination" : "*.example.com","ports":[443, 80],"paths":["/v1/*","/b"]}"#,
    );
    assert_eq!(fields.rule_type, "FQDN");
    assert_eq!(fields.destination, "*.example.com");
    assert_eq!(fields.ports, Some(vec![443, 80]));
    assert_eq!(
        fields.paths,
        Some(vec!["/v1/*".to_owned(), "/b".to_owned()])
    );
    let fields = split_json(r#"{"type":"CIDR","destination":"10.0.0.0/8"}"#);
    assert_eq!((fields.ports, fields.paths), (None, None));
}
