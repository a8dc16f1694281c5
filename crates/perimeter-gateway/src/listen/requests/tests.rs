use proptest::prelude::*;

use super::*;

fn target(s: &str) -> Target {
    Target::parse_authority(s, None).unwrap()
}

/// Push `chunks` one after the other: what went through, the hosts found, and the refusal.
fn run(t: &str, chunks: &[&[u8]]) -> (Vec<u8>, Vec<String>, Option<Why>) {
    let mut r = Requests::new(target(t), 16 * 1024);
    let (mut out, mut found) = (Vec::new(), Vec::new());
    for c in chunks {
        if let Err(why) = r.push(c, &mut out, &mut found) {
            return (out, found.into_iter().map(|f| f.host).collect(), Some(why));
        }
    }
    (out, found.into_iter().map(|f| f.host).collect(), None)
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: api.example.com\r\n\r\n";

#[test]
fn requests_and_their_bodies_pass_and_every_head_is_checked() {
    let post = b"POST /b HTTP/1.1\r\nHost: api.example.com:80\r\nContent-Length: 5\r\n\r\nhello";
    let chunked = b"POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
    let all = [GET, &post[..], &chunked[..], GET].concat();
    let (out, hosts, refused) = run("api.example.com:80", &[&all]);
    assert_eq!(refused, None);
    assert_eq!(out, all);
    assert_eq!(
        hosts,
        [
            "api.example.com",
            "api.example.com:80",
            "api.example.com",
            "api.example.com"
        ]
    );
    // The same, a byte at a time: heads are held until complete, nothing is lost.
    let bytes: Vec<&[u8]> = all.chunks(1).collect();
    let (out, hosts, refused) = run("api.example.com:80", &bytes);
    assert_eq!(refused, None);
    assert_eq!(out, all);
    assert_eq!(hosts.len(), 4);
}

#[test]
fn a_request_for_another_host_is_refused_before_any_of_it_goes() {
    // Smuggled after a body: the second head names another virtual host.
    let first = b"POST /b HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 3\r\n\r\nabc";
    let second = b"GET /secret HTTP/1.1\r\nHost: vhost.example.com\r\n\r\n";
    let (out, _, refused) = run("api.example.com:80", &[&[&first[..], &second[..]].concat()]);
    assert_eq!(refused, Some(Why::HostMismatch));
    assert_eq!(out, first, "only the first request went");
    // Inside a chunked body, a request-looking chunk is data; after it, the next head counts.
    let chunked = b"POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\nGET / HTTP/1.1\r\nHost: x.y\r\n\r\n\r\n0\r\n\r\n";
    let (out, _, refused) = run("api.example.com:80", &[&chunked[..], second]);
    assert_eq!(refused, Some(Why::HostMismatch));
    assert_eq!(out, chunked);
    for (name, bad, why) in [
        ("another port", &b"GET / HTTP/1.1\r\nHost: api.example.com:8080\r\n\r\n"[..], Why::HostMismatch),
        ("absolute-form elsewhere", b"GET http://vhost.example.com/ HTTP/1.1\r\nHost: vhost.example.com\r\n\r\n", Why::HostMismatch),
        ("no host", b"GET / HTTP/1.0\r\n\r\n", Why::HostMissing),
        ("upgrade", b"GET / HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", Why::InvalidHttpRequest),
        ("connect", b"CONNECT vhost.example.com:443 HTTP/1.1\r\nHost: vhost.example.com:443\r\n\r\n", Why::InvalidHttpRequest),
        ("both framings", b"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", Why::Head(HeadError::AmbiguousFraming)),
        ("bare LF", b"GET / HTTP/1.1\nHost: api.example.com\n\n", Why::Head(HeadError::BareLf)),
        ("a tab", b"GET\t/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n", Why::Head(HeadError::Malformed("")),),
        ("two hosts", b"GET / HTTP/1.1\r\nHost: api.example.com\r\nHost: vhost.example.com\r\n\r\n", Why::MultipleHostHeaders),
    ] {
        let (out, _, refused) = run("api.example.com:80", &[GET, bad]);
        assert_eq!(out, GET, "{name}: only the first request went");
        match (&refused, &why) {
            (Some(Why::Head(HeadError::Malformed(_))), Why::Head(HeadError::Malformed(_))) => {}
            _ => assert_eq!(refused.as_ref(), Some(&why), "{name}"),
        }
    }
}

#[test]
fn broken_chunked_framing_is_refused() {
    let head = b"POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n";
    for bad in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"5\nhello\r\n", b"-1\r\n"] {
        let (_, _, refused) = run("api.example.com:80", &[head, bad]);
        assert_eq!(
            refused,
            Some(Why::InvalidHttpRequest),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn at_a_literal_a_name_is_left_to_the_caller_and_the_literal_itself_passes() {
    let mut r = Requests::new(target("198.51.100.7:80"), 16 * 1024);
    let (mut out, mut found) = (Vec::new(), Vec::new());
    r.push(b"GET / HTTP/1.1\r\nHost: 198.51.100.7\r\n\r\nGET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n", &mut out, &mut found)
        .unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].name_at_literal, None);
    assert_eq!(
        found[1].name_at_literal.as_ref().map(|n| n.as_str()),
        Some("api.example.com")
    );
    assert_eq!(found[1].at, 38);
}

#[test]
fn what_the_fast_path_takes() {
    let t = target("api.example.com:80");
    let host = |first: &[u8]| Requests::takes(&t, first, 16 * 1024).map(|(host, _, _)| host);
    assert_eq!(host(GET).as_deref(), Some("api.example.com"));
    // A method is a token in any case: its Host is what is checked.
    let lower = b"get / HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
    assert_eq!(host(lower).as_deref(), Some("api.example.com"));
    for other in [
        &b"GET / HTTP/1.1\nHost: api.example.com\n\n"[..],
        b"\r\nGET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: vhost.example.com\r\n\r\n",
    ] {
        // hyper's to serve (it answers with the reason, or adds the Host).
        assert_eq!(host(other), None, "{:?}", String::from_utf8_lossy(other));
    }
}

proptest! {
    /// However the stream is cut, the same bytes go through and the same refusal comes.
    #[test]
    fn cutting_the_stream_changes_nothing(cuts in prop::collection::vec(1usize..40, 1..20), bad in any::<bool>()) {
        let second: &[u8] = if bad {
            b"GET /s HTTP/1.1\r\nHost: vhost.example.com\r\n\r\n"
        } else {
            b"GET /s HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
        };
        let chunked = b"POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let all = [GET, &chunked[..], second, GET].concat();
        let whole = run("api.example.com:80", &[&all]);
        let mut pieces = Vec::new();
        let mut rest = &all[..];
        for c in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let n = (*c).min(rest.len());
            pieces.push(&rest[..n]);
            rest = &rest[n..];
        }
        let cut = run("api.example.com:80", &pieces);
        prop_assert_eq!(&cut.2, &whole.2);
        prop_assert_eq!(&cut.0, &whole.0);
    }
}

/// The stream a tunnel's first request starts: its body is followed, and the next head checked.
#[test]
fn the_stream_goes_on_after_the_first_head_taken() {
    let t = target("api.example.com:80");
    let first = b"POST /b HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 29\r\n\r\n";
    let body = b"GET / HTTP/1.1\r\nHost: x.y\r\n\r\n";
    let (_, mut r, len) = Requests::takes(&t, first, 16 * 1024).unwrap();
    assert_eq!(len, first.len());
    let (mut out, mut found) = (Vec::new(), Vec::new());
    // The body looks like a request for another host: it is the first request's body.
    r.push(body, &mut out, &mut found).unwrap();
    assert_eq!(out, body);
    assert!(found.is_empty());
    let refused = r.push(
        b"GET /s HTTP/1.1\r\nHost: x.y\r\n\r\n",
        &mut out,
        &mut found,
    );
    assert_eq!(refused, Err(Why::HostMismatch));
}
