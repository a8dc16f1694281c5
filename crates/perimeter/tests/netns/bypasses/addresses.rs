//! Findings 3 and 5: the gateway host's own addresses; binary first bytes.

use super::*;

/// A listener on 0.0.0.0:0 in the root namespace (where the gateway runs), answering
/// `root-listener` and recording the address each connection was made to. Stopped on drop.
struct RootListener {
    port: u16,
    reached: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RootListener {
    fn start() -> RootListener {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let reached = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (reached.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                if let Ok(local) = s.local_addr() {
                    r.lock().unwrap().push(local.ip());
                }
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\nconnection: close\r\n\r\nroot-listener\n",
                );
            }
        });
        RootListener {
            port,
            reached,
            stop,
            thread: Some(thread),
        }
    }

    /// How many connections were made to `addr`.
    fn reached_at(&self, addr: Ipv4Addr) -> usize {
        let all = self.reached.lock().unwrap();
        all.iter().filter(|a| **a == IpAddr::V4(addr)).count()
    }
}

impl Drop for RootListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Finding 3: the root namespace's link address (and a name for it) under `policy`: refused.
fn own_link_address(e: &Env, l: &RootListener, policy: &str) -> Vec<String> {
    let a = e.net.a;
    let port = l.port;
    let mut cases = Vec::new();
    for url in [
        format!("http://{}:{port}/own", a.root_link),
        format!("http://gateway-host.test:{port}/own"),
    ] {
        cases.push(
            case(format!("3. {policy}: {url}"), curl(url.clone())).refused(403, "special_address"),
        );
        cases.push(
            case(
                format!("3. {policy}: CONNECT for {url}"),
                curl_with(&["-p"], url),
            )
            .refused(403, "special_address"),
        );
    }
    let mut failures = case::run(&e.net, e.proxy(), cases);
    let reached = l.reached_at(a.root_link);
    if reached > 0 {
        failures.push(format!(
            "3. {policy}: the listener on 0.0.0.0 was reached {reached} time(s) at {}",
            a.root_link
        ));
    }
    failures
}

/// Finding 3: an address added to the gateway host's interface after the gateway started is
/// refused once the gateway noticed it (20 s at most), and never reached after that.
fn address_added_later(e: &Env, l: &RootListener, policy: &str, addr: Ipv4Addr) -> Vec<String> {
    let name = format!("3. {policy}: an address added after the gateway started ({addr})");
    let _added = e.net.add_root_address(addr);
    let url = format!("http://{addr}:{}/added", l.port);
    let refused = |r: &crate::clients::Resp| {
        r.status() == 403 && r.error().as_deref() == Some("special_address")
    };
    let mut last = None;
    let noticed = poll(20, || {
        let r = curl_via(e.proxy(), &[], &url);
        let ok = refused(&r);
        last = Some(r);
        ok.then_some(())
    });
    if noticed.is_none() {
        return vec![format!(
            "{name}: not refused within 20 s; the last answer {last:?}"
        )];
    }
    let before = l.reached_at(addr);
    let mut failures = Vec::new();
    for _ in 0..3 {
        let r = curl_via(e.proxy(), &[], &url);
        if !refused(&r) {
            failures.push(format!("{name}: refused, then answered {r:?}"));
        }
    }
    if l.reached_at(addr) != before {
        failures.push(format!("{name}: reached after it was refused"));
    }
    failures
}

/// 256 KiB of pseudo-random bytes whose first byte is `first`, and whose third is not 0x01
/// (the SSLv2 ClientHello message type).
fn binary(first: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(first);
    let mut data: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    data[0] = first;
    if data[2] == 0x01 {
        data[2] = 0x02;
    }
    data
}

/// Finding 5: a binary protocol whose first byte is >= 0x80, through CONNECT to the echo
/// upstream.
fn binary_echo(e: &Env, first: u8) -> Result<(), String> {
    let data = binary(first);
    let before = e.net.events().len();
    let mut c = Conn::open(e.proxy());
    c.connect("allowed.test:7")
        .map_err(|h| format!("CONNECT allowed.test:7 answered {h:?}"))?;
    let mut w = c.writer();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&sent);
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let back = c.bytes_until_closed(20);
    let _ = writer.join();
    let back = match back {
        Ok(b) => b,
        Err(b) => return Err(format!("still open after 20 s, {} bytes back", b.len())),
    };
    if back != data {
        let same = back.iter().zip(&data).take_while(|(a, b)| a == b).count();
        return Err(format!(
            "{} of {} bytes echoed back ({same} matching from the start)",
            back.len(),
            data.len()
        ));
    }
    let got = poll(WAIT, || {
        e.net.events()[before..]
            .iter()
            .find(|ev| ev["kind"] == "echo-end")
            .cloned()
    });
    match got {
        Some(ev) if ev["bytes"] == data.len() => Ok(()),
        other => Err(format!("the upstream's account: {other:?}")),
    }
}

/// A real SSLv2 ClientHello (the SSLv2 record header, then CLIENT-HELLO), for `version`.
fn sslv2_client_hello(version: [u8; 2]) -> Vec<u8> {
    // SSL_CK_RC4_128_WITH_MD5, SSL_CK_DES_192_EDE3_CBC_WITH_MD5, TLS_RSA_WITH_AES_128_CBC_SHA.
    let ciphers = [0x01, 0x00, 0x80, 0x07, 0x00, 0xc0, 0x00, 0x00, 0x2f];
    let challenge = [0x42u8; 16];
    let mut msg = vec![0x01, version[0], version[1]];
    msg.extend_from_slice(&(ciphers.len() as u16).to_be_bytes());
    msg.extend_from_slice(&0u16.to_be_bytes()); // session id length
    msg.extend_from_slice(&(challenge.len() as u16).to_be_bytes());
    msg.extend_from_slice(&ciphers);
    msg.extend_from_slice(&challenge);
    let mut record = vec![0x80 | (msg.len() >> 8) as u8, msg.len() as u8];
    record.extend_from_slice(&msg);
    record
}

/// Finding 5: a real SSLv2 ClientHello is still refused: closed with `tls_sslv2_hello`.
fn sslv2_refused(e: &Env, version: [u8; 2]) -> Result<(), String> {
    let before = e.net.events().len();
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    c.connect("allowed.test:7")
        .map_err(|h| format!("CONNECT allowed.test:7 answered {h:?}"))?;
    let _ = c.send(&sslv2_client_hello(version));
    match c.until_closed(WAIT) {
        Err(text) => return Err(format!("the tunnel was still open: {text:?}")),
        Ok(text) if !text.is_empty() => return Err(format!("bytes came back: {text:?}")),
        Ok(_) => {}
    }
    e.decision(&c, since, "tls_sslv2_hello")?;
    let relayed: Vec<Value> = e.net.events()[before..]
        .iter()
        .filter(|ev| ev["kind"] == "echo-data")
        .cloned()
        .collect();
    if relayed.is_empty() {
        Ok(())
    } else {
        Err(format!("it reached the upstream: {relayed:?}"))
    }
}

#[test]
fn own_addresses_are_refused_and_binary_first_bytes_pass() {
    let e = env(
        "bypass-own-addresses",
        NetOptions::default(),
        "ALLOW_ALL",
        |_| Vec::new(),
    );
    let l = RootListener::start();
    let a = e.net.a;
    let mut failures = Vec::new();

    failures.extend(own_link_address(&e, &l, "ALLOW_ALL"));
    failures.extend(address_added_later(&e, &l, "ALLOW_ALL", a.spare[0]));
    for first in [0x80, 0xa5, 0xff] {
        let name = format!("5. CONNECT, 256 KiB of binary starting with {first:#04x}, echoed");
        check(&mut failures, &name, binary_echo(&e, first));
    }
    for (version, what) in [([0x00, 0x02], "SSL 2.0"), ([0x03, 0x01], "TLS 1.0")] {
        let name = format!("5. CONNECT, an SSLv2 ClientHello for {what}");
        check(&mut failures, &name, sslv2_refused(&e, version));
    }

    set_traffic_policy(&e.s, &e.key, &e.cid, "REPORT_ONLY");
    failures.extend(own_link_address(&e, &l, "REPORT_ONLY"));
    failures.extend(address_added_later(&e, &l, "REPORT_ONLY", a.spare[1]));

    // A CIDR rule naming the address opens it.
    let rule = add_rule(
        &e.s,
        &e.key,
        &e.cid,
        json!({"name": "gateway-host", "type": "CIDR", "destination": format!("{}/32", a.root_link), "ports": [l.port], "description": "a service on the gateway host"}),
    );
    wait_rule_active(&e.s, &e.key, &e.cid, rule["id"].as_str().unwrap());
    let table = vec![
        case(
            "3. REPORT_ONLY: the link address, named by a CIDR rule",
            curl(format!("http://{}:{}/named", a.root_link, l.port)),
        )
        .allowed(200)
        .contains("root-listener"),
    ];
    failures.extend(case::run(&e.net, e.proxy(), table));
    case::assert_passed("own addresses and binary first bytes", &failures);
}
