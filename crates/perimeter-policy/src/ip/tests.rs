use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

#[test]
fn ip_literal_accepted() {
    let cases = [
        ("dotted quad", "127.0.0.1", "127.0.0.1"),
        ("zeros", "0.0.0.0", "0.0.0.0"),
        ("broadcast", "255.255.255.255", "255.255.255.255"),
        ("v6", "2001:db8::1", "2001:db8::1"),
        ("v6 bracketed", "[2001:db8::1]", "2001:db8::1"),
        ("v6 loopback", "[::1]", "::1"),
        (
            "v6 long form",
            "2001:0db8:0000:0000:0000:0000:0000:0001",
            "2001:db8::1",
        ),
        ("v4-mapped", "::ffff:127.0.0.1", "::ffff:127.0.0.1"),
    ];
    for (name, input, want) in cases {
        let got = parse_ip_literal(input).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.to_string(), want, "{name}");
    }
}

#[test]
fn ip_literal_refused() {
    let cases = [
        ("empty", "", "is empty"),
        ("decimal", "2130706433", "single number"),
        ("octal", "0177.0.0.1", "leading zero"),
        ("zero padded", "127.000.0.1", "leading zero"),
        ("zero padded last", "127.0.0.01", "leading zero"),
        ("hex", "0x7f.0.0.1", "hexadecimal"),
        ("hex whole", "0x7f000001", "hexadecimal"),
        ("short", "127.1", "shortened"),
        ("short 3", "10.0.1", "shortened"),
        ("too many", "1.2.3.4.5", "too many parts"),
        ("out of range", "256.0.0.1", "greater than 255"),
        ("zone", "fe80::1%eth0", "zone id"),
        ("zone bracketed", "[fe80::1%25eth0]", "zone id"),
        ("bad v6", "2001:db8:::1", "not a valid IPv6"),
        ("unclosed bracket", "[::1", "not a valid IPv6"),
        ("v4 in brackets", "[127.0.0.1]", "not a valid IPv6"),
        ("with port", "127.0.0.1:80", "not a valid IPv6"),
        ("name", "example.com", "not an IP address"),
        ("trailing dot", "127.0.0.1.", "not an IP address"),
        ("sign", "+1.2.3.4", "not an IP address"),
        ("space", " 1.2.3.4", "not an IP address"),
    ];
    for (name, input, reason) in cases {
        let err = parse_ip_literal(input).expect_err(name).to_string();
        assert!(err.contains(reason), "{name}: {input:?}: {err}");
    }
}

#[test]
fn cidr_accepted() {
    let cases = [
        ("v4", "10.0.0.0/8", "10.0.0.0/8"),
        ("v4 bare address", "10.0.0.1", "10.0.0.1/32"),
        ("v4 host", "192.0.2.1/32", "192.0.2.1/32"),
        ("v4 everything", "0.0.0.0/0", "0.0.0.0/0"),
        ("v6", "2001:db8::/32", "2001:db8::/32"),
        ("v6 long form", "2001:0db8::/32", "2001:db8::/32"),
        ("v6 bare", "2001:db8::1", "2001:db8::1/128"),
        ("v6 everything", "::/0", "::/0"),
    ];
    for (name, input, want) in cases {
        let got: Cidr = input.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.to_string(), want, "{name}");
    }
}

#[test]
fn cidr_refused() {
    let cases = [
        (
            "host bits v4",
            "10.0.0.1/8",
            "10.0.0.1/8 has host bits set; use 10.0.0.0/8",
        ),
        (
            "host bits v6",
            "2001:db8::1/32",
            "has host bits set; use 2001:db8::/32",
        ),
        ("leading zeros", "010.0.0.0/8", "leading zero"),
        ("short", "10/8", "single number"),
        ("short 2", "10.0/16", "shortened"),
        ("hex", "0xa.0.0.0/8", "hexadecimal"),
        (
            "v4 len too big",
            "10.0.0.0/33",
            "prefix length 33; it must be 0-32",
        ),
        (
            "v6 len too big",
            "::/129",
            "prefix length 129; it must be 0-128",
        ),
        ("len leading zero", "10.0.0.0/08", "invalid prefix length"),
        ("len empty", "10.0.0.0/", "invalid prefix length"),
        ("len sign", "10.0.0.0/+8", "invalid prefix length"),
        ("len huge", "10.0.0.0/99999999999", "invalid prefix length"),
        ("two slashes", "10.0.0.0/8/8", "invalid prefix length"),
        ("zone", "fe80::%eth0/64", "zone id"),
        ("brackets", "[2001:db8::]/32", "without brackets"),
        ("empty", "", "CIDR is empty"),
        ("name", "example.com/24", "not an IP address"),
        ("netmask", "10.0.0.0/255.0.0.0", "invalid prefix length"),
    ];
    for (name, input, reason) in cases {
        let err = input.parse::<Cidr>().expect_err(name).to_string();
        assert!(err.contains(reason), "{name}: {input:?}: {err}");
    }
}

#[test]
fn cidr_contains() {
    let cidr: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(cidr.contains(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))));
    assert!(!cidr.contains(IpAddr::V4(Ipv4Addr::new(11, 0, 0, 0))));
}

#[test]
fn ipv4_behind_table() {
    let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
    let cases = [
        ("mapped", "::ffff:169.254.169.254", "169.254.169.254"),
        ("compatible", "::127.0.0.1", "127.0.0.1"),
        ("nat64", "64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("6to4", "2002:a00:1::1", "10.0.0.1"),
        (
            "teredo",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "192.0.2.45",
        ),
        ("loopback stays", "::1", "::1"),
        ("unspecified stays", "::", "::"),
        ("plain v6 stays", "2001:db8::1", "2001:db8::1"),
        ("v4 stays", "10.0.0.1", "10.0.0.1"),
    ];
    for (name, input, want) in cases {
        assert_eq!(ipv4_behind(v4(input)), v4(want), "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn ip_literal_never_panics(s in "\\PC{0,50}") {
        if let Ok(addr) = parse_ip_literal(&s) {
            prop_assert_eq!(parse_ip_literal(&addr.to_string()), Ok(addr));
        }
    }

    #[test]
    fn canonical_addresses_round_trip(a in any::<u32>(), b in any::<u128>()) {
        let v4 = IpAddr::V4(Ipv4Addr::from(a));
        let v6 = IpAddr::V6(Ipv6Addr::from(b));
        prop_assert_eq!(parse_ip_literal(&v4.to_string()), Ok(v4));
        prop_assert_eq!(parse_ip_literal(&v6.to_string()), Ok(v6));
        prop_assert_eq!(parse_ip_literal(&format!("[{v6}]")), Ok(v6));
    }

    #[test]
    fn cidr_never_panics(s in "[0-9a-fx:./%\\[\\]]{0,45}") {
        if let Ok(c) = s.parse::<Cidr>() {
            prop_assert_eq!(c.net(), c.net().trunc());
            prop_assert_eq!(c.to_string().parse::<Cidr>(), Ok(c));
        }
    }

    #[test]
    fn cidr_display_has_zero_host_bits(a in any::<u32>(), len4 in 0u8..=32, b in any::<u128>(), len6 in 0u8..=128) {
        for (addr, len) in [(IpAddr::V4(Ipv4Addr::from(a)), len4), (IpAddr::V6(Ipv6Addr::from(b)), len6)] {
            let input = format!("{addr}/{len}");
            match input.parse::<Cidr>() {
                Ok(c) => {
                    prop_assert_eq!(c.net(), c.net().trunc());
                    prop_assert_eq!(c.to_string(), input);
                }
                Err(CidrError::HostBitsSet { suggested, .. }) => {
                    let fixed: Cidr = suggested.parse().unwrap();
                    prop_assert_eq!(fixed.net(), fixed.net().trunc());
                    prop_assert!(fixed.contains(addr));
                }
                Err(e) => prop_assert!(false, "{input}: {e}"),
            }
        }
    }
}
