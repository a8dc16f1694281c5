//! The bypasses and wrong answers found when the gateway was attacked from inside (issue 8,
//! findings 1 to 7, and 10), each a named case that asserts the verdict, the reason, and that
//! nothing of a refused request reached the upstream (judged from the upstreams' own logs).
//!
//! A refusal before a tunnel opens carries `x-perimeter-error`; a refusal inside an open tunnel
//! is either an answer inside it (with `x-perimeter-error`) or the tunnel closed, whose reason
//! is read from the gateway's decision log (`--log-format json`): the event whose `source` is
//! the test's own connection.
//!
//! Each scenario collects the failures of all its cases and reports them together, so a run
//! on a gateway that lacks a fix lists every case the fix must turn.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use perimeter_testkit::api::{add_rule, delete_rule_applied, set_traffic_policy, wait_rule_active};
use perimeter_testkit::{Gateway, Server};
use serde_json::{Value, json};

use crate::case::{self, Reason, case, curl, curl_with, raw_bytes, tls};
use crate::clients::{Conn, Reply, curl_via};
use crate::fixture::{Addrs, HOMOGRAPH_UTF8, HttpServer, Net, NetOptions};
use crate::{Perimeter, start_perimeter};

/// Seconds to wait for a decision event, for a tunnel to close, for an upstream's event.
const WAIT: u64 = 5;

// ---------------------------------------------------------------------------------------------
// One scenario: a namespace fixture, a control plane, a gateway logging JSON.

struct Env {
    // Dropped in this order: the gateway, the control plane, then the namespaces.
    gw: Gateway,
    s: Server,
    key: String,
    cid: String,
    /// Rule ids by name.
    rules: HashMap<String, String>,
    net: Net,
}

/// A scenario under `policy` with the rules `rules` makes of the slot's addresses.
fn env(
    cluster: &str,
    opts: NetOptions,
    policy: &str,
    rules: impl FnOnce(Addrs) -> Vec<Value>,
) -> Env {
    let net = Net::new(opts);
    let Perimeter { s, key, cid, gw } =
        start_perimeter(&net, cluster, "gw-1", &["--log-format", "json"]);
    set_traffic_policy(&s, &key, &cid, policy);
    let mut ids = HashMap::new();
    for body in rules(net.a) {
        let name = body["name"].as_str().unwrap().to_string();
        let rule = add_rule(&s, &key, &cid, body);
        let id = rule["id"].as_str().unwrap().to_string();
        wait_rule_active(&s, &key, &cid, &id);
        ids.insert(name, id);
    }
    Env {
        gw,
        s,
        key,
        cid,
        rules: ids,
        net,
    }
}

impl Env {
    fn proxy(&self) -> &str {
        &self.gw.proxy
    }

    /// How many decision events the gateway has logged so far.
    fn decisions_so_far(&self) -> usize {
        self.gw.decisions().len()
    }

    /// The first decision event after the first `since` that `pick` accepts, waiting [`WAIT`]
    /// s for it.
    fn decision_where(
        &self,
        since: usize,
        what: &str,
        pick: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(WAIT);
        loop {
            let all = self.gw.decisions();
            if let Some(e) = all.iter().skip(since).find(|e| pick(e)) {
                return Ok(e.clone());
            }
            if Instant::now() > deadline {
                return Err(format!("no decision event {what} in {WAIT} s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The decision event of the client connection `c` with `reason`, logged after the first
    /// `since`.
    fn decision(&self, c: &Conn, since: usize, reason: &str) -> Result<Value, String> {
        let source = c.source.as_str();
        self.decision_where(since, &format!("with reason {reason}"), |e| {
            e["source"] == source && e["reason"] == reason
        })
        .map_err(|why| {
            let mine: Vec<Value> = self
                .gw
                .decisions()
                .into_iter()
                .skip(since)
                .filter(|e| e["source"] == source)
                .collect();
            format!("{why}; the connection's events: {mine:?}")
        })
    }

    /// Delete the rule `name` and wait until the API no longer has it: the gateway applied it.
    fn delete_rule(&self, name: &str) {
        delete_rule_applied(&self.s, &self.key, &self.cid, &self.rules[name]);
    }
}

/// Record `result` of the case `name`.
fn check(failures: &mut Vec<String>, name: &str, result: Result<(), String>) {
    if let Err(why) = result {
        failures.push(format!("{name}: {why}"));
    }
}

/// Poll `f` every 50 ms for `secs` at most; its first `Some`.
fn poll<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether an upstream event mentions `text` anywhere (path, Host, raw bytes, body).
fn mentions(e: &Value, text: &str) -> bool {
    e.to_string().contains(text)
}

mod addresses;
mod authorities;
mod http;
mod revocation;
