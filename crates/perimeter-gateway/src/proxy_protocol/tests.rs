use proptest::prelude::*;

use super::*;
use crate::listen::endpoint::proxy_header::encode;

fn header(data: &[u8]) -> Header {
    match parse(data) {
        Parsed::Header(h) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(data)),
    }
}

fn invalid(data: &[u8]) -> Invalid {
    match parse(data) {
        Parsed::Invalid(i) => i,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(data)),
    }
}

/// A v2 header from its parts (no checks: for malformed ones too).
fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

const V4_BLOCK: [u8; 12] = [198, 51, 100, 7, 203, 0, 113, 9, 0x9c, 0x40, 0x23, 0x84];

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let h = header(b"PROXY TCP4 198.51.100.7 203.0.113.9 40000 9092\r\nSELECT 1");
    assert_eq!(h.version, 1);
    assert_eq!(h.source(), Some("198.51.100.7:40000".parse().unwrap()));
    assert_eq!(h.destination(), Some("203.0.113.9:9092".parse().unwrap()));
    assert_eq!(h.header_len, 48);
    let h = header(b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n");
    assert_eq!(h.source(), Some("[2001:db8::1]:0".parse().unwrap()));
    assert_eq!(h.destination(), Some("[::1]:65535".parse().unwrap()));
    let h = header(b"PROXY UNKNOWN\r\n");
    assert_eq!((h.addresses, h.header_len), (Addresses::Unknown, 15));
    let h = header(b"PROXY UNKNOWN ffff::1 whatever\r\nrest");
    assert_eq!(h.addresses, Addresses::Unknown);
    assert_eq!(h.source(), None);
}

#[test]
fn v1_malformations() {
    use Invalid::*;
    for (bytes, why) in [
        (&b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"[..], V1BadProtocol),
        (b"PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", V1BadProtocol),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", V1BadFields),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", V1BadFields),
        (b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", V1BadFields),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", V1BadFields),
        (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", V1BadAddress),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", V1BadAddress),
        (b"PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", V1BadAddress),
        (b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", V1BadAddress),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", V1BadPort),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n", V1BadPort),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 +80 2\r\n", V1BadPort),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 \r\n", V1BadPort),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", V1BadLineEnd),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", V1BadLineEnd),
        (b"PROXY TCP4 1.2.3.4\t1.2.3.4 1 2\r\n", V1BadByte),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\0\r\n", V1BadByte),
        (b"PROXY\r\n", NoSignature),
        (b"GET / HTTP/1.1\r\n\r\n", NoSignature),
        (b"\x16\x03\x01", NoSignature),
    ] {
        assert_eq!(invalid(bytes), why, "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn v1_over_107_bytes_and_missing_crlf() {
    // 107 bytes exactly, CRLF included, is the longest header.
    let mut longest = b"PROXY UNKNOWN ".to_vec();
    longest.resize(105, b'x');
    longest.extend_from_slice(b"\r\n");
    assert_eq!(header(&longest).header_len, V1_MAX_LEN);
    let mut over = b"PROXY UNKNOWN ".to_vec();
    over.resize(106, b'x');
    over.extend_from_slice(b"\r\n");
    assert_eq!(invalid(&over), Invalid::V1TooLong);
    // No CRLF: more is asked for up to the cap, then refused.
    let mut no_crlf = b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2".to_vec();
    assert_eq!(parse(&no_crlf), Parsed::NeedMore);
    no_crlf.resize(V1_MAX_LEN, b' ');
    assert_eq!(invalid(&no_crlf), Invalid::V1TooLong);
}

#[test]
fn v2_from_the_forwarders_encoder_with_the_aws_tlv() {
    let src: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let dst: SocketAddr = "203.0.113.9:9092".parse().unwrap();
    let mut bytes = encode(src, dst, "vpce-0a1b2c3d4e5f67890");
    let len = bytes.len();
    bytes.extend_from_slice(b"client bytes");
    let h = header(&bytes);
    assert_eq!((h.version, h.header_len), (2, len));
    assert_eq!((h.source(), h.destination()), (Some(src), Some(dst)));
    assert_eq!(h.vpce_id(), Some("vpce-0a1b2c3d4e5f67890"));
    let src6: SocketAddr = "[2001:db8::7]:1".parse().unwrap();
    let h = header(&encode(src6, dst, "pe-1"));
    assert_eq!(h.source(), Some(src6));
    assert_eq!(
        h.destination(),
        Some("[::ffff:203.0.113.9]:9092".parse().unwrap())
    );
    assert_eq!(h.vpce_id(), Some("pe-1"));
}

#[test]
fn v2_local_unspec_and_other_tlvs() {
    // LOCAL: addresses ignored, whatever the family.
    let h = header(&v2(0x20, 0x11, &V4_BLOCK));
    assert_eq!((h.addresses, h.source()), (Addresses::Local, None));
    let h = header(&v2(0x20, 0x00, &[]));
    assert_eq!(h.addresses, Addresses::Local);
    let h = header(&v2(0x20, 0x31, &[0; 216]));
    assert_eq!(h.addresses, Addresses::Local);
    // PROXY with UNSPEC: unknown, the connection's endpoints are used.
    let h = header(&v2(0x21, 0x00, &[]));
    assert_eq!(h.addresses, Addresses::Unknown);
    // TLVs other than AWS's are kept as they are; a non-id AWS subtype too.
    let mut body = V4_BLOCK.to_vec();
    body.extend_from_slice(&[0x04, 0, 2, 0, 0, TLV_AWS, 0, 2, 0x02, b'x']);
    let h = header(&v2(0x21, 0x11, &body));
    assert_eq!(h.tlvs.len(), 2);
    assert_eq!(h.vpce_id(), None);
    assert_eq!(h.source(), Some("198.51.100.7:40000".parse().unwrap()));
}

#[test]
fn v2_malformations() {
    use Invalid::*;
    let mut bad_sig = v2(0x21, 0x11, &V4_BLOCK);
    bad_sig[11] = b'X';
    assert_eq!(invalid(&bad_sig), NoSignature);
    assert_eq!(invalid(&v2(0x11, 0x11, &V4_BLOCK)), V2BadVersion);
    assert_eq!(invalid(&v2(0x31, 0x11, &V4_BLOCK)), V2BadVersion);
    assert_eq!(invalid(&v2(0x22, 0x11, &V4_BLOCK)), V2BadCommand);
    assert_eq!(invalid(&v2(0x21, 0x41, &V4_BLOCK)), V2BadFamily);
    assert_eq!(invalid(&v2(0x21, 0x13, &V4_BLOCK)), V2BadFamily);
    assert_eq!(invalid(&v2(0x21, 0x12, &V4_BLOCK)), V2UnsupportedFamily);
    assert_eq!(invalid(&v2(0x21, 0x31, &[0; 216])), V2UnsupportedFamily);
    assert_eq!(invalid(&v2(0x21, 0x11, &V4_BLOCK[..11])), V2ShortAddresses);
    assert_eq!(invalid(&v2(0x21, 0x21, &[0; 35])), V2ShortAddresses);
    // The length field alone decides: a header announcing more than the cap is refused at once.
    let mut huge = v2(0x21, 0x11, &V4_BLOCK);
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(invalid(&huge[..16]), V2TooLong);
    for tail in [&[0x04][..], &[0x04, 0], &[0x04, 0, 1], &[0x04, 0, 3, 1, 2]] {
        let mut body = V4_BLOCK.to_vec();
        body.extend_from_slice(tail);
        assert_eq!(invalid(&v2(0x21, 0x11, &body)), V2TlvOverrun, "{tail:?}");
    }
    for aws in [
        &[][..],
        &[AWS_VPCE_ID],
        &[AWS_VPCE_ID, b' '],
        &[AWS_VPCE_ID, 0xff],
    ] {
        let mut body = V4_BLOCK.to_vec();
        body.push(TLV_AWS);
        body.extend_from_slice(&(aws.len() as u16).to_be_bytes());
        body.extend_from_slice(aws);
        assert_eq!(invalid(&v2(0x21, 0x11, &body)), V2BadAwsTlv, "{aws:?}");
    }
}

#[test]
fn truncated_and_split_headers_need_more_until_complete() {
    let whole = encode(
        "198.51.100.7:1".parse().unwrap(),
        "203.0.113.9:2".parse().unwrap(),
        "vpce-1",
    );
    let v1 = b"PROXY TCP4 198.51.100.7 203.0.113.9 1 2\r\n".to_vec();
    for bytes in [whole, v1] {
        // Read a few bytes at a time, as a reader would across short reads.
        let mut buf = Vec::new();
        let mut answer = Parsed::NeedMore;
        for chunk in bytes.chunks(5) {
            assert_eq!(answer, Parsed::NeedMore);
            buf.extend_from_slice(chunk);
            answer = parse(&buf);
        }
        assert_eq!(header(&bytes).header_len, bytes.len());
        assert_eq!(answer, parse(&bytes));
    }
    assert_eq!(parse(b""), Parsed::NeedMore);
    assert_eq!(parse(b"PRO"), Parsed::NeedMore);
    assert_eq!(parse(b"\r\n\r\n\0"), Parsed::NeedMore);
}

#[test]
fn signature_detection() {
    assert_eq!(starts_with_signature(b""), None);
    assert_eq!(starts_with_signature(b"PROX"), None);
    assert_eq!(starts_with_signature(b"PROXY "), Some(true));
    assert_eq!(starts_with_signature(b"PROXY UNKNOWN\r\n"), Some(true));
    assert_eq!(starts_with_signature(&V2_SIGNATURE[..11]), None);
    assert_eq!(starts_with_signature(&V2_SIGNATURE), Some(true));
    assert_eq!(starts_with_signature(b"PROXYZ"), Some(false));
    assert_eq!(starts_with_signature(b"\r\n\r\n\0\r\nQUIX"), Some(false));
    assert_eq!(
        starts_with_signature(b"\0\0\0\x08\x04\xd2\x16\x2f"),
        Some(false)
    );
}

fn socket() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        crate::fuzzing::fuzz_proxy_protocol(&data);
    }

    #[test]
    fn arbitrary_bytes_after_a_signature_never_panic(
        v in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = if v { V2_SIGNATURE.to_vec() } else { V1_PREFIX.to_vec() };
        bytes.extend_from_slice(&data);
        crate::fuzzing::fuzz_proxy_protocol(&bytes);
    }

    #[test]
    fn an_encoded_v2_header_parses_back_and_its_prefixes_need_more(
        src in socket(),
        dst in socket(),
        id in "[a-z0-9-]{1,64}",
        tail in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let bytes = encode(src, dst, &id);
        let mut with_tail = bytes.clone();
        with_tail.extend_from_slice(&tail);
        let h = header(&with_tail);
        prop_assert_eq!(h.header_len, bytes.len());
        prop_assert_eq!(h.vpce_id(), Some(id.as_str()));
        let canonical = |a: SocketAddr| (a.ip().to_canonical(), a.port());
        let got = h.source().unwrap();
        prop_assert_eq!(canonical(got), canonical(src));
        prop_assert_eq!(canonical(h.destination().unwrap()), canonical(dst));
        for end in 0..bytes.len() {
            prop_assert_eq!(parse(&bytes[..end]), Parsed::NeedMore, "prefix {}", end);
        }
    }

    #[test]
    fn a_v1_header_parses_back_and_its_prefixes_need_more(
        (src, dst) in prop_oneof![
            (any::<([u8; 4], u16)>(), any::<([u8; 4], u16)>())
                .prop_map(|(s, d)| (SocketAddr::from(s), SocketAddr::from(d))),
            (any::<([u8; 16], u16)>(), any::<([u8; 16], u16)>())
                .prop_map(|(s, d)| (SocketAddr::from(s), SocketAddr::from(d))),
        ],
        tail in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
        let line = format!("PROXY {proto} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port());
        let bytes = line.as_bytes();
        let mut with_tail = bytes.to_vec();
        with_tail.extend_from_slice(&tail);
        let h = header(&with_tail);
        prop_assert_eq!(h.header_len, bytes.len());
        prop_assert_eq!(h.source(), Some(src));
        prop_assert_eq!(h.destination(), Some(dst));
        for end in 0..bytes.len() {
            prop_assert_eq!(parse(&bytes[..end]), Parsed::NeedMore, "prefix {}", end);
        }
    }
}
