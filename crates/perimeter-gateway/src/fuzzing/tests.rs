use proptest::prelude::*;

use super::*;

/// Bytes biased towards what the parsers care about: TLS record and handshake bytes, HTTP
/// separators, and fragments of real inputs.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> =
        b"\x16\x03\x01\x00\x02\x10\xff\x80 :/[]@%.\r\n\tGETCONNECThtp1HTTP/1.1Hosconet-Lgh0x9"
            .to_vec();
    let fragments: Vec<&'static [u8]> = vec![
        b"CONNECT ",
        b"GET http://",
        b"GET / HTTP/1.1\r\n",
        b" HTTP/1.1\r\n",
        b"Host: ",
        b"example.com",
        b":443",
        b"[2001:db8::1]",
        b"127.0.0.1",
        b"Content-Length: 5\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"\r\n\r\n",
        &[22, 3, 1, 0, 60, 1, 0, 0, 56, 3, 3],
        &[0, 0, 0, 14, 0, 12, 0, 0, 9],
        &[0, 16, 0, 5, 0, 3, 2, b'h', b'2'],
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..128),
        proptest::collection::vec(proptest::sample::select(alphabet), 0..128),
        proptest::collection::vec(proptest::sample::select(fragments), 0..12)
            .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fuzz_targets_never_panic(data in interesting_bytes()) {
        fuzz_client_hello(&data);
        fuzz_http_head(&data);
        fuzz_first_bytes(&data);
    }
}

#[test]
fn captured_hellos_pass_the_fuzz_invariants() {
    for bytes in [
        &include_bytes!("../tls/testdata/openssl_tls13_sni_alpn.bin")[..],
        include_bytes!("../tls/testdata/openssl_no_sni.bin"),
        include_bytes!("../tls/testdata/openssl_tls12_sni.bin"),
        include_bytes!("../tls/testdata/curl_idn_sni.bin"),
    ] {
        fuzz_client_hello(bytes);
    }
}

#[test]
fn valid_heads_pass_the_fuzz_invariants() {
    for raw in [
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "GET http://example.com/x HTTP/1.1\r\nHost: example.com:80\r\n\r\nbody",
        "GET /x HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
    ] {
        fuzz_http_head(raw.as_bytes());
    }
}

/// DNS messages: arbitrary bytes, and queries whose header and question are mostly right.
fn dns_messages() -> impl Strategy<Value = Vec<u8>> {
    let question = (
        proptest::sample::select(vec![
            &b"\x03www\x07example\x03com\x00"[..],
            b"\x04pe-1\x07example\x03net\x00",
            b"\x01b\x07example\x03org\x00",
            b"\x06secret\x08attacker\x00",
            b"\xc0\x0c",
            b"\x00",
        ]),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(name, qtype, class)| {
            [name, &qtype.to_be_bytes(), &class.to_be_bytes()].concat()
        });
    let header = (any::<u16>(), any::<u8>(), 0u16..3, 0u16..2, any::<u8>()).prop_map(
        |(id, flags, qd, ar, rest)| {
            let mut h = id.to_be_bytes().to_vec();
            h.extend_from_slice(&[flags & 0x79, rest & 0x10]);
            h.extend_from_slice(&qd.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0]);
            h.extend_from_slice(&ar.to_be_bytes());
            h
        },
    );
    let opt = proptest::collection::vec(any::<u8>(), 0..3)
        .prop_map(|v| [&[0u8, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0][..], &v].concat());
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            header,
            proptest::collection::vec(question, 0..3),
            proptest::option::of(opt)
        )
            .prop_map(|(h, qs, opt)| [h, qs.concat(), opt.unwrap_or_default()].concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn dns_query_path_never_panics(data in dns_messages()) {
        fuzz_dns_query(&data);
    }
}
