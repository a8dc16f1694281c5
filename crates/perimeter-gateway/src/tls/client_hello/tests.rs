use proptest::prelude::*;

use super::*;

// ---- captured ClientHellos (see ../testdata/README.md) ----

const OPENSSL_TLS13: &[u8] = include_bytes!("../testdata/openssl_tls13_sni_alpn.bin");
const OPENSSL_NO_SNI: &[u8] = include_bytes!("../testdata/openssl_no_sni.bin");
const OPENSSL_TLS12: &[u8] = include_bytes!("../testdata/openssl_tls12_sni.bin");
const CURL_IDN: &[u8] = include_bytes!("../testdata/curl_idn_sni.bin");

fn parsed(sni: Option<&str>, alpn: &[&str]) -> ClientHello {
    ClientHello::Parsed {
        sni: sni.map(str::to_owned),
        alpn: alpn.iter().map(|s| (*s).to_owned()).collect(),
        ech: false,
    }
}

fn captured() -> Vec<(&'static str, &'static [u8], ClientHello)> {
    vec![
        (
            "openssl tls1.3 sni+alpn",
            OPENSSL_TLS13,
            parsed(Some("example.com"), &["h2", "http/1.1"]),
        ),
        ("openssl no sni", OPENSSL_NO_SNI, parsed(None, &[])),
        (
            "openssl tls1.2 mixed-case sni",
            OPENSSL_TLS12,
            parsed(Some("Upstream.Example.ORG"), &["http/1.1"]),
        ),
        (
            "curl idn sni",
            CURL_IDN,
            parsed(Some("xn--bcher-kva.example"), &["h2", "http/1.1"]),
        ),
    ]
}

#[test]
fn captured_hellos_parse() {
    for (name, bytes, want) in captured() {
        assert_eq!(parse_client_hello(bytes), want, "{name}");
    }
}

#[test]
fn every_prefix_of_a_captured_hello_needs_more() {
    for (name, bytes, _) in captured() {
        for end in 0..bytes.len() {
            match parse_client_hello(&bytes[..end]) {
                ClientHello::NeedMore(n) => {
                    assert!(
                        n >= 1 && end + n <= bytes.len(),
                        "{name}: prefix {end} asked {n}"
                    )
                }
                other => panic!("{name}: prefix {end} gave {other:?}"),
            }
        }
    }
}

#[test]
fn bytes_after_the_hello_are_ignored() {
    // A TLS 1.3 client may send ChangeCipherSpec and 0-RTT data right behind its hello.
    let (_, bytes, want) = captured().remove(0);
    let mut with_early_data = bytes.to_vec();
    with_early_data.extend_from_slice(&[20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xaa, 0xbb]);
    assert_eq!(parse_client_hello(&with_early_data), want);
}

/// The handshake message inside a single-record capture.
fn handshake_of(capture: &[u8]) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([capture[3], capture[4]]));
    capture[5..5 + len].to_vec()
}

/// Frame a handshake message over records of at most `chunk` bytes.
fn frame(handshake: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in handshake.chunks(chunk) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[test]
fn a_hello_split_over_several_records_parses_the_same() {
    for (name, bytes, want) in captured() {
        let hs = handshake_of(bytes);
        for chunk in [1 + hs.len() / 32, 3 + hs.len() / 8, 100, hs.len() - 1] {
            let framed = frame(&hs, chunk);
            assert_eq!(parse_client_hello(&framed), want, "{name} chunk {chunk}");
            for end in 0..framed.len() {
                assert!(
                    matches!(parse_client_hello(&framed[..end]), ClientHello::NeedMore(_)),
                    "{name} chunk {chunk} prefix {end}"
                );
            }
        }
    }
}

// ---- built ClientHellos ----

fn ext(ext_type: u16, data: Vec<u8>) -> (u16, Vec<u8>) {
    (ext_type, data)
}

fn vec16(data: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (name_type, name) in names {
        list.push(*name_type);
        list.extend_from_slice(&vec16(name));
    }
    vec16(&list)
}

fn alpn_ext(protocols: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for p in protocols {
        list.push(u8::try_from(p.len()).unwrap());
        list.extend_from_slice(p);
    }
    vec16(&list)
}

fn body_with(extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(32);
    body.extend_from_slice(&[9; 32]);
    body.extend_from_slice(&vec16(&[0x13, 0x01, 0x13, 0x02]));
    body.extend_from_slice(&[1, 0]);
    if let Some(exts) = extensions {
        let mut all = Vec::new();
        for (t, d) in exts {
            all.extend_from_slice(&t.to_be_bytes());
            all.extend_from_slice(&vec16(d));
        }
        body.extend_from_slice(&vec16(&all));
    }
    body
}

fn handshake(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    let mut hs = vec![1, len[1], len[2], len[3]];
    hs.extend_from_slice(body);
    hs
}

fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    frame(&handshake(&body_with(Some(exts))), 1 << 14)
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    want: ClientHello,
}

fn invalid(name: &'static str, input: Vec<u8>, reason: InvalidHello) -> Case {
    Case {
        name,
        input,
        want: ClientHello::Invalid(reason),
    }
}

#[test]
fn table() {
    let ok_sni = ext(0, sni_ext(&[(0, b"example.com")]));
    // Padding that makes the body exactly MAX_CLIENT_HELLO_LEN: with its handshake header the
    // message no longer fits one record and spills 4 bytes into a second.
    let base = body_with(Some(&[ok_sni.clone(), ext(21, vec![])])).len();
    let big_padding = ext(21, vec![0; MAX_CLIENT_HELLO_LEN - base]);
    let max_hello = handshake(&body_with(Some(&[ok_sni.clone(), big_padding.clone()])));
    assert_eq!(max_hello.len(), MAX_CLIENT_HELLO_LEN + 4);
    let mut over_max = body_with(Some(&[ok_sni.clone(), big_padding.clone()]));
    over_max.push(0);
    let mut truncated_ext = body_with(Some(std::slice::from_ref(&ok_sni)));
    let n = truncated_ext.len();
    truncated_ext[n - 12] = 0xff; // low byte of the host_name length
    let mut odd_suites = body_with(None);
    odd_suites[2 + 32 + 1 + 32 + 1] = 3;
    let mut long_session = body_with(None);
    long_session[2 + 32] = 33;
    let mut ext_len_short = body_with(Some(std::slice::from_ref(&ok_sni)));
    ext_len_short.push(0); // a byte beyond the extensions block
    let mut interleaved = frame(
        &handshake(&body_with(Some(std::slice::from_ref(&ok_sni)))),
        20,
    );
    interleaved[20 + 5] = 23; // the second record is application data
    let mut bad_record_len = hello(std::slice::from_ref(&ok_sni));
    bad_record_len[3..5].copy_from_slice(&0u16.to_be_bytes());
    let mut trailing = handshake(&body_with(None));
    trailing.extend_from_slice(&[1, 0, 0, 0]);

    let cases = vec![
        Case {
            name: "empty input",
            input: vec![],
            want: ClientHello::NeedMore(5),
        },
        Case {
            name: "plain http",
            input: b"GET / HTTP/1.1\r\n".to_vec(),
            want: ClientHello::NotTls,
        },
        Case {
            name: "http CONNECT",
            input: b"CONNECT example.com:443 HTTP/1.1\r\n".to_vec(),
            want: ClientHello::NotTls,
        },
        Case {
            name: "no extensions",
            input: frame(&handshake(&body_with(None)), 1 << 14),
            want: parsed(None, &[]),
        },
        Case {
            name: "sni and alpn",
            input: hello(&[
                ext(0x0a0a, vec![]), // GREASE
                ok_sni.clone(),
                ext(16, alpn_ext(&[b"h2", b"\x0a\x0a"])),
            ]),
            want: parsed(Some("example.com"), &["h2", "\\n\\n"]),
        },
        Case {
            name: "sni kept as sent (trailing dot, upper case)",
            input: hello(&[ext(0, sni_ext(&[(0, b"Example.COM.")]))]),
            want: parsed(Some("Example.COM."), &[]),
        },
        Case {
            name: "largest hello, larger than one record",
            input: frame(&max_hello, 1 << 14),
            want: parsed(Some("example.com"), &[]),
        },
        invalid(
            "one byte over the largest hello",
            frame(&handshake(&over_max), 1 << 14),
            InvalidHello::TooLarge,
        ),
        invalid(
            "sslv2 compatible hello",
            vec![0x80, 0x2e, 0x01, 0x03, 0x01],
            InvalidHello::Sslv2Hello,
        ),
        invalid(
            "record major version 2",
            vec![22, 2, 0, 0, 10],
            InvalidHello::RecordVersion,
        ),
        invalid(
            "zero-length record",
            bad_record_len,
            InvalidHello::RecordLength,
        ),
        invalid(
            "record longer than 2^14",
            vec![22, 3, 1, 0x40, 0x01],
            InvalidHello::RecordLength,
        ),
        invalid(
            "server hello",
            vec![22, 3, 3, 0, 4, 2, 0, 0, 0],
            InvalidHello::NotClientHello,
        ),
        invalid(
            "hello length over the cap",
            vec![22, 3, 1, 0, 4, 1, 0, 0x40, 0x01],
            InvalidHello::TooLarge,
        ),
        invalid(
            "too many records",
            frame(
                &handshake(&body_with(Some(&[ok_sni.clone(), big_padding]))),
                400,
            ),
            InvalidHello::TooLarge,
        ),
        invalid(
            "application data record inside the hello",
            interleaved,
            InvalidHello::InterleavedRecord,
        ),
        invalid(
            "second handshake message in the record",
            frame(&trailing, 1 << 14),
            InvalidHello::TrailingHandshakeData,
        ),
        invalid(
            "client version 2",
            frame(&handshake(&[2, 0]), 100),
            InvalidHello::ClientVersion,
        ),
        invalid(
            "session id longer than 32",
            frame(&handshake(&long_session), 1 << 14),
            InvalidHello::Length,
        ),
        invalid(
            "odd cipher suite list",
            frame(&handshake(&odd_suites), 1 << 14),
            InvalidHello::EmptyList,
        ),
        invalid(
            "bytes after the extensions block",
            frame(&handshake(&ext_len_short), 1 << 14),
            InvalidHello::Length,
        ),
        invalid(
            "host_name length past the extension",
            frame(&handshake(&truncated_ext), 1 << 14),
            InvalidHello::Length,
        ),
        invalid(
            "duplicate sni extension",
            hello(&[ok_sni.clone(), ok_sni.clone()]),
            InvalidHello::DuplicateExtension,
        ),
        invalid(
            "duplicate unknown extension",
            hello(&[ext(0x1234, vec![]), ok_sni.clone(), ext(0x1234, vec![1])]),
            InvalidHello::DuplicateExtension,
        ),
        invalid(
            "two host names",
            hello(&[ext(
                0,
                sni_ext(&[(0, b"allowed.example"), (0, b"evil.example")]),
            )]),
            InvalidHello::MultipleServerNames,
        ),
        invalid(
            "non host_name type",
            hello(&[ext(0, sni_ext(&[(1, b"example.com")]))]),
            InvalidHello::ServerNameType,
        ),
        invalid(
            "host_name then another type",
            hello(&[ext(0, sni_ext(&[(0, b"example.com"), (7, b"x")]))]),
            InvalidHello::ServerNameType,
        ),
        invalid(
            "empty server name list",
            hello(&[ext(0, vec16(&[]))]),
            InvalidHello::Length,
        ),
        invalid(
            "empty sni extension",
            hello(&[ext(0, vec![])]),
            InvalidHello::Length,
        ),
        invalid(
            "empty host name",
            hello(&[ext(0, sni_ext(&[(0, b"")]))]),
            InvalidHello::ServerNameBytes,
        ),
        invalid(
            "nul in host name",
            hello(&[ext(0, sni_ext(&[(0, b"allowed.example\0.evil.example")]))]),
            InvalidHello::ServerNameBytes,
        ),
        invalid(
            "space in host name",
            hello(&[ext(0, sni_ext(&[(0, b"a b.example")]))]),
            InvalidHello::ServerNameBytes,
        ),
        invalid(
            "utf-8 host name",
            hello(&[ext(0, sni_ext(&[(0, "bücher.example".as_bytes())]))]),
            InvalidHello::ServerNameBytes,
        ),
        invalid(
            "empty alpn list",
            hello(&[ext(16, vec16(&[]))]),
            InvalidHello::AlpnEmpty,
        ),
        invalid(
            "empty alpn protocol",
            hello(&[ext(16, alpn_ext(&[b"h2", b""]))]),
            InvalidHello::AlpnEmpty,
        ),
    ];
    for case in cases {
        assert_eq!(parse_client_hello(&case.input), case.want, "{}", case.name);
    }
}

#[test]
fn reasons_are_distinct() {
    let all = [
        InvalidHello::Sslv2Hello,
        InvalidHello::RecordVersion,
        InvalidHello::RecordLength,
        InvalidHello::InterleavedRecord,
        InvalidHello::NotClientHello,
        InvalidHello::TooLarge,
        InvalidHello::TrailingHandshakeData,
        InvalidHello::ClientVersion,
        InvalidHello::Length,
        InvalidHello::EmptyList,
        InvalidHello::DuplicateExtension,
        InvalidHello::MultipleServerNames,
        InvalidHello::ServerNameType,
        InvalidHello::ServerNameBytes,
        InvalidHello::AlpnEmpty,
    ];
    let names: std::collections::BTreeSet<_> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), all.len());
}

// ---- properties ----

fn arb_extensions() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
    let sni = "[a-z0-9.-]{1,40}".prop_map(|n| ext(0, sni_ext(&[(0, n.as_bytes())])));
    let alpn = proptest::collection::vec("[a-z0-9/.]{1,10}", 1..4).prop_map(|ps| {
        let refs: Vec<&[u8]> = ps.iter().map(|p| p.as_bytes()).collect();
        ext(16, alpn_ext(&refs))
    });
    let other = (17u16..2000, proptest::collection::vec(any::<u8>(), 0..300));
    (
        proptest::option::of(sni),
        proptest::option::of(alpn),
        proptest::collection::btree_map(17u16..2000, Just(()), 0..6),
        proptest::collection::vec(other, 0..1),
    )
        .prop_map(|(sni, alpn, types, data)| {
            let mut exts: Vec<(u16, Vec<u8>)> = types
                .into_keys()
                .map(|t| (t, data.first().map(|d| d.1.clone()).unwrap_or_default()))
                .collect();
            exts.extend(sni);
            exts.extend(alpn);
            exts
        })
}

/// A valid hello, framed over records of a random size.
fn arb_hello() -> impl Strategy<Value = Vec<u8>> {
    (arb_extensions(), 1usize..2000)
        .prop_map(|(exts, chunk)| frame(&handshake(&body_with(Some(&exts))), chunk.max(64)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_client_hello(&data);
    }

    #[test]
    fn never_panics_on_mutated_hellos(
        hello in arb_hello(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut data = hello;
        for (i, b) in flips {
            let i = i.index(data.len());
            data[i] = b;
        }
        let _ = parse_client_hello(&data);
    }

    #[test]
    fn prefixes_need_more_and_the_whole_parses(hello in arb_hello(), cut in any::<prop::sample::Index>()) {
        let full = parse_client_hello(&hello);
        prop_assert!(matches!(full, ClientHello::Parsed { .. }), "{full:?}");
        let end = cut.index(hello.len());
        match parse_client_hello(&hello[..end]) {
            ClientHello::NeedMore(n) => prop_assert!(n >= 1 && end + n <= hello.len()),
            other => prop_assert_eq!(other, full),
        }
    }

    #[test]
    fn trailing_records_do_not_change_the_result(hello in arb_hello(), tail in proptest::collection::vec(any::<u8>(), 0..50)) {
        let full = parse_client_hello(&hello);
        let mut longer = hello.clone();
        longer.extend_from_slice(&tail);
        prop_assert_eq!(parse_client_hello(&longer), full);
    }
}

/// SSLv2 is recognised by its whole header; other bytes with the high bit set are another
/// protocol (binary protocols through CONNECT must pass).
#[test]
fn sslv2_is_recognised_by_its_whole_header_only() {
    for (name, bytes, want) in [
        (
            "ssl 2.0 hello",
            &[0x80, 0x2e, 0x01, 0x00, 0x02][..],
            ClientHello::Invalid(InvalidHello::Sslv2Hello),
        ),
        (
            "tls 1.0 in sslv2 format",
            &[0x80, 0x2e, 0x01, 0x03, 0x01, 0x00],
            ClientHello::Invalid(InvalidHello::Sslv2Hello),
        ),
        (
            "header so far",
            &[0x80, 0x2e, 0x01],
            ClientHello::NeedMore(2),
        ),
        ("one byte", &[0xff], ClientHello::NeedMore(4)),
        (
            "message type not 1",
            &[0x80, 0x2e, 0x02, 0x03, 0x01],
            ClientHello::NotTls,
        ),
        (
            "version not 0x0002/0x03xx",
            &[0x80, 0x2e, 0x01, 0x07, 0x01],
            ClientHello::NotTls,
        ),
        (
            "ssl 2.0 minor wrong",
            &[0x80, 0x2e, 0x01, 0x00, 0x09],
            ClientHello::NotTls,
        ),
        (
            "0x03 minor past tls 1.3",
            &[0x80, 0x2e, 0x01, 0x03, 0x09],
            ClientHello::NotTls,
        ),
        (
            "random binary",
            &[0xc3, 0x11, 0x9a, 0x00, 0x42, 0x17],
            ClientHello::NotTls,
        ),
        ("utf-8 text", "é ça".as_bytes(), ClientHello::NotTls),
    ] {
        assert_eq!(parse_client_hello(bytes), want, "{name}");
    }
}

/// A hello with `encrypted_client_hello` (0xfe0d) says so; its SNI is the outer name.
#[test]
fn encrypted_client_hello_is_reported_with_the_outer_name() {
    let outer = ext(0, sni_ext(&[(0, b"public.example")]));
    let ech = ext(0xfe0d, vec![0, 0, 1, 0, 1, 7, 0, 2, 0xaa, 0xbb, 0, 1, 0xcc]);
    assert_eq!(
        parse_client_hello(&hello(&[outer.clone(), ech])),
        ClientHello::Parsed {
            sni: Some("public.example".into()),
            alpn: vec![],
            ech: true,
        }
    );
    assert_eq!(
        parse_client_hello(&hello(&[outer])),
        parsed(Some("public.example"), &[])
    );
}
