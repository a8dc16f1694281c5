//! Named cases, as smokescreen's tables have them: each [`Case`] sends one request (or one
//! exchange) and asserts the verdict, the reason, and what reached the upstreams, judged from
//! the upstreams' own logs (the events that came in while the case ran).
//!
//! [`run`] runs a table and returns the failures instead of stopping at the first one, so that
//! a broken gateway shows every case it gets wrong; [`assert_passed`] fails the test with all
//! of them listed.

use perimeter_testkit::header_value;
use serde_json::Value;

use crate::clients::{curl_via, raw, raw_all, s_client, workload_curl};
use crate::fixture::Net;

/// How a case reaches the gateway.
pub enum Send {
    /// curl through the explicit proxy: extra arguments, then the URL.
    Curl(Vec<String>, String),
    /// Raw bytes to the explicit proxy; the answer as [`raw`] reads it (one response, or a
    /// tunnel until the proxy closes it).
    Raw(Vec<u8>),
    /// Raw bytes to the explicit proxy; everything until it closes.
    RawAll(Vec<u8>),
    /// `openssl s_client` through the explicit proxy to `connect` (`host:port`) with `sni`
    /// (`None`: no SNI), verifying against the fixture's certificate, then `request`.
    SClient {
        connect: String,
        sni: Option<String>,
        request: String,
    },
    /// curl inside the workload namespace, without a proxy (the transparent listener).
    Workload(Vec<String>),
}

impl std::fmt::Debug for Send {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Send::Curl(args, url) => write!(f, "curl {args:?} {url}"),
            Send::Raw(b) | Send::RawAll(b) => write!(f, "raw {:?}", String::from_utf8_lossy(b)),
            Send::SClient {
                connect,
                sni,
                request,
            } => write!(f, "s_client {connect} SNI {sni:?} then {request:?}"),
            Send::Workload(args) => write!(f, "curl in the workload {args:?}"),
        }
    }
}

/// curl through the proxy.
pub fn curl(url: impl Into<String>) -> Send {
    Send::Curl(Vec::new(), url.into())
}

/// curl through the proxy with extra arguments.
pub fn curl_with(args: &[&str], url: impl Into<String>) -> Send {
    Send::Curl(args.iter().map(|a| a.to_string()).collect(), url.into())
}

pub fn raw_bytes(bytes: impl Into<Vec<u8>>) -> Send {
    Send::Raw(bytes.into())
}

pub fn raw_until_closed(bytes: impl Into<Vec<u8>>) -> Send {
    Send::RawAll(bytes.into())
}

pub fn tls(connect: &str, sni: Option<&str>, request: &str) -> Send {
    Send::SClient {
        connect: connect.into(),
        sni: sni.map(str::to_string),
        request: request.into(),
    }
}

pub fn workload(args: &[&str]) -> Send {
    Send::Workload(args.iter().map(|a| a.to_string()).collect())
}

/// The `x-perimeter-error` a refusal must carry.
#[derive(Debug, Clone, Copy)]
pub enum Reason {
    /// Exactly this reason.
    Is(&'static str),
    /// Some reason: the header is there and not empty.
    Present,
}

/// What the client must see.
#[derive(Debug)]
pub enum Verdict {
    /// Through to an upstream, whose final response has this status (a tunnel's CONNECT was
    /// answered 200). For `openssl s_client`: a verified handshake and a clean exit.
    Allowed(u16),
    /// Refused by the gateway with this status (a tunnel's: the CONNECT's) and reason.
    Refused(u16, Reason),
    /// Refused with one of these statuses; the reason is not checked.
    RefusedOneOf(&'static [u16]),
    /// The tunnel (or redirected connection) was set up and then closed: nothing answered.
    Closed,
    /// A keep-alive connection: exactly these status lines, in order.
    Statuses(&'static [&'static str]),
}

/// One named case.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub send: Send,
    pub verdict: Option<Verdict>,
    /// Texts the answer must contain.
    pub contains: Vec<String>,
    /// Texts the answer must not contain.
    pub lacks: Vec<String>,
    /// What the upstreams served for this case, in order: HTTP(S) request targets and lines
    /// of the greeting server. Any other upstream event than a bare connection (`accept`,
    /// `tcp-empty`, `greet-end`) fails the case; an empty list means nothing reached any
    /// upstream.
    pub served: Vec<String>,
}

/// A case named `name` that sends `send`; give it a verdict.
pub fn case(name: impl Into<String>, send: Send) -> Case {
    Case {
        name: name.into(),
        send,
        verdict: None,
        contains: Vec::new(),
        lacks: Vec::new(),
        served: Vec::new(),
    }
}

impl Case {
    pub fn allowed(mut self, status: u16) -> Case {
        self.verdict = Some(Verdict::Allowed(status));
        self
    }

    pub fn refused(self, status: u16, reason: &'static str) -> Case {
        self.refused_with(status, Reason::Is(reason))
    }

    pub fn refused_with(mut self, status: u16, reason: Reason) -> Case {
        self.verdict = Some(Verdict::Refused(status, reason));
        self
    }

    pub fn refused_one_of(mut self, statuses: &'static [u16]) -> Case {
        self.verdict = Some(Verdict::RefusedOneOf(statuses));
        self
    }

    pub fn closed(mut self) -> Case {
        self.verdict = Some(Verdict::Closed);
        self
    }

    pub fn statuses(mut self, lines: &'static [&'static str]) -> Case {
        self.verdict = Some(Verdict::Statuses(lines));
        self
    }

    pub fn contains(mut self, text: impl Into<String>) -> Case {
        self.contains.push(text.into());
        self
    }

    pub fn lacks(mut self, text: impl Into<String>) -> Case {
        self.lacks.push(text.into());
        self
    }

    /// The upstreams serve exactly `paths` (in order) for this case.
    pub fn serves<S: Into<String>>(mut self, paths: impl IntoIterator<Item = S>) -> Case {
        self.served = paths.into_iter().map(Into::into).collect();
        self
    }
}

/// What a client saw, in one shape for every client.
#[derive(Debug)]
struct Answer {
    /// The gateway's status: a refused CONNECT's, else the final response's (0: none).
    status: u16,
    /// The CONNECT response's status (0: no tunnel).
    connect: u16,
    /// `x-perimeter-error`, if any.
    reason: Option<String>,
    text: String,
    /// The client's exit status (s_client, curl in the workload).
    exited_ok: bool,
}

/// The status of the first status line in `text` (0: none).
fn first_status(text: &str) -> u16 {
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn send(net: &Net, proxy: &str, send: &Send) -> Answer {
    match send {
        Send::Curl(args, url) => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = curl_via(proxy, &args, url);
            Answer {
                status: r.status(),
                connect: r.connect,
                reason: r.error(),
                text: r.text,
                exited_ok: true,
            }
        }
        Send::Raw(bytes) | Send::RawAll(bytes) => {
            let text = match send {
                Send::Raw(_) => raw(proxy, bytes),
                _ => raw_all(proxy, bytes),
            };
            let status = first_status(&text);
            Answer {
                status,
                connect: if bytes.starts_with(b"CONNECT ") {
                    status
                } else {
                    0
                },
                reason: header_value(&text, "x-perimeter-error"),
                text,
                exited_ok: true,
            }
        }
        Send::SClient {
            connect,
            sni,
            request,
        } => {
            let (ok, text) = s_client(proxy, connect, sni.as_deref(), &net.cert, request);
            Answer {
                status: 0,
                connect: 0,
                reason: None,
                text,
                exited_ok: ok,
            }
        }
        Send::Workload(args) => {
            let w = net
                .workload
                .as_ref()
                .expect("a workload case needs the workload namespace");
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, reason, text, ok) = workload_curl(w, &args);
            Answer {
                status: code,
                connect: 0,
                reason,
                text,
                exited_ok: ok,
            }
        }
    }
}

/// Whether `a` is what `verdict` asks for; why not, if it is not.
fn judge(c: &Case, verdict: &Verdict, a: &Answer) -> Result<(), String> {
    let tls_client = matches!(c.send, Send::SClient { .. });
    match verdict {
        Verdict::Allowed(_) if tls_client => {
            if !a.exited_ok {
                return Err("the TLS client failed".into());
            }
        }
        Verdict::Allowed(status) => {
            if a.connect != 0 && a.connect != 200 {
                return Err(format!("CONNECT answered {}", a.connect));
            }
            if a.status != *status {
                return Err(format!("status {} instead of {status}", a.status));
            }
        }
        Verdict::Refused(status, reason) => {
            if a.status != *status {
                return Err(format!("status {} instead of {status}", a.status));
            }
            match reason {
                Reason::Is(want) if a.reason.as_deref() != Some(*want) => {
                    return Err(format!("reason {:?} instead of {want:?}", a.reason));
                }
                Reason::Present if a.reason.as_deref().is_none_or(str::is_empty) => {
                    return Err("no x-perimeter-error".into());
                }
                _ => {}
            }
        }
        Verdict::RefusedOneOf(statuses) => {
            if !statuses.contains(&a.status) {
                return Err(format!(
                    "status {} instead of one of {statuses:?}",
                    a.status
                ));
            }
        }
        Verdict::Closed => {
            let closed = match &c.send {
                Send::SClient { .. } => !a.exited_ok,
                Send::Workload(_) => !a.exited_ok && a.status == 0,
                Send::Curl(..) => a.connect == 200 && a.status == 0,
                Send::Raw(_) | Send::RawAll(_) => a.connect == 200,
            };
            if !closed {
                return Err("not a tunnel closed before any answer".into());
            }
            if a.text.contains("upstream ") {
                return Err("an upstream answered".into());
            }
        }
        Verdict::Statuses(lines) => {
            let seen: Vec<&str> = a
                .text
                .lines()
                .filter(|l| l.starts_with("HTTP/1.1 "))
                .collect();
            if seen != *lines {
                return Err(format!("status lines {seen:?} instead of {lines:?}"));
            }
        }
    }
    for t in &c.contains {
        if !a.text.contains(t.as_str()) {
            return Err(format!("the answer lacks {t:?}"));
        }
    }
    for t in &c.lacks {
        if a.text.contains(t.as_str()) {
            return Err(format!("the answer contains {t:?}"));
        }
    }
    Ok(())
}

/// Whether the upstream events of a case are what it expects.
fn judge_upstream(c: &Case, events: &[Value]) -> Result<(), String> {
    let mut served = Vec::new();
    for e in events {
        match e["kind"].as_str().unwrap_or_default() {
            "accept" | "tcp-empty" | "greet-end" => {}
            "http" | "https" => served.push(e["path"].as_str().unwrap_or_default().to_string()),
            "greet" => served.push(e["line"].as_str().unwrap_or_default().to_string()),
            _ => return Err(format!("the upstream logged {e}")),
        }
    }
    if served != c.served {
        return Err(format!(
            "the upstreams served {served:?} instead of {:?}; their events: {events:?}",
            c.served
        ));
    }
    Ok(())
}

/// Run `cases` through the explicit proxy at `proxy` (or in the workload namespace), one by
/// one; returns one line per failing case.
pub fn run(net: &Net, proxy: &str, cases: Vec<Case>) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let verdict = c
            .verdict
            .as_ref()
            .unwrap_or_else(|| panic!("case {} has no verdict", c.name));
        let before = net.settled_events().len();
        let answer = send(net, proxy, &c.send);
        let events = net.settled_events();
        let new = events.get(before..).unwrap_or_default();
        let judged = judge(&c, verdict, &answer).and_then(|()| judge_upstream(&c, new));
        if judged.is_ok() && matches!(verdict, Verdict::Refused(_, Reason::Present)) {
            // Any reason will do: show which one it is.
            println!("{}: {} {:?}", c.name, answer.status, answer.reason);
        }
        if let Err(why) = judged {
            failures.push(format!(
                "{}: {why}\n    sent {:?}\n    got {answer:?}",
                c.name, c.send
            ));
        }
    }
    failures
}

/// Fail with every failure listed, if there is any.
#[track_caller]
pub fn assert_passed(scenario: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{scenario}: {} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
