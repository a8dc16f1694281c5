//! First bytes: a TLS ClientHello.

/// A TLS 1.3 ClientHello for `sni`, one record, laid out as OpenSSL 3.0's `s_client
/// -servername <sni> -alpn h2,http/1.1` sends it (the capture
/// `crates/perimeter-gateway/src/tls/testdata/openssl_tls13_sni_alpn.bin`): the same cipher
/// suites and extensions in the same order, an x25519 key share. Random, session id and key
/// share are fixed bytes: nobody completes this handshake.
pub(crate) fn client_hello(sni: &str) -> Vec<u8> {
    fn u16be(n: usize) -> [u8; 2] {
        (n as u16).to_be_bytes()
    }
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&u16be(body.len()));
        out.extend_from_slice(body);
    }
    let filler = |seed: u8, n: usize| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(73).wrapping_add(seed))
            .collect()
    };
    let name = sni.as_bytes();
    let mut exts = Vec::new();
    // server_name: list length, host_name (0), name length, name.
    let mut sn = Vec::new();
    sn.extend_from_slice(&u16be(name.len() + 3));
    sn.push(0);
    sn.extend_from_slice(&u16be(name.len()));
    sn.extend_from_slice(name);
    ext(&mut exts, 0x0000, &sn);
    ext(&mut exts, 0x000b, &[3, 0, 1, 2]); // ec_point_formats
    ext(
        &mut exts,
        0x000a, // supported_groups
        &[
            0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01, 0x00,
            0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04,
        ],
    );
    ext(&mut exts, 0x0023, &[]); // session_ticket
    ext(&mut exts, 0x0010, b"\x00\x0c\x02h2\x08http/1.1"); // ALPN
    ext(&mut exts, 0x0016, &[]); // encrypt_then_mac
    ext(&mut exts, 0x0017, &[]); // extended_master_secret
    ext(
        &mut exts,
        0x000d, // signature_algorithms
        &[
            0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09,
            0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01,
            0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
        ],
    );
    ext(
        &mut exts,
        0x002b, // supported_versions: TLS 1.3, 1.2, 1.1, 1.0
        &[0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01],
    );
    ext(&mut exts, 0x002d, &[0x01, 0x01]); // psk_key_exchange_modes: psk_dhe_ke
    let mut ks = vec![0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]; // key_share: x25519, 32 bytes
    ks.extend(filler(0x5a, 32));
    ext(&mut exts, 0x0033, &ks);

    let suites: &[u16] = &[
        0x1302, 0x1303, 0x1301, 0xc02c, 0xc030, 0x009f, 0xcca9, 0xcca8, 0xccaa, 0xc02b, 0xc02f,
        0x009e, 0xc024, 0xc028, 0x006b, 0xc023, 0xc027, 0x0067, 0xc00a, 0xc014, 0x0039, 0xc009,
        0xc013, 0x0033, 0x009d, 0x009c, 0x003d, 0x003c, 0x0035, 0x002f, 0x00ff,
    ];
    let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
    body.extend(filler(0x11, 32)); // random
    body.push(32);
    body.extend(filler(0x97, 32)); // legacy_session_id
    body.extend_from_slice(&u16be(suites.len() * 2));
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&u16be(exts.len()));
    body.extend(exts);

    let mut hs = vec![0x01]; // client_hello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake, TLS 1.0 record version
    record.extend_from_slice(&u16be(hs.len()));
    record.extend(hs);
    record
}
