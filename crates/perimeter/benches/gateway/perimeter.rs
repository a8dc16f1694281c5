//! Perimeter: control plane, rules, gateway.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{Api, futures_join_all, start_serve};
use crate::clients::{Dest, Via, one_tunnel, open, read_to_close};
use crate::hello::client_hello;
use crate::procs::Proc;
use crate::{BIN, RULE_CONCURRENCY, SINK_DOMAIN, loopback};

impl Api {
    pub(crate) async fn rule_state(&self, cid: &str, rid: &str) -> String {
        let v = self
            .ok(
                reqwest::Method::GET,
                &format!("/api/v1/clusters/{cid}/networking/egress-rules/{rid}"),
                None,
            )
            .await;
        v["rule"]["state"].as_str().unwrap_or("").to_string()
    }

    pub(crate) async fn add_rule(&self, cid: &str, body: Value) -> String {
        let v = self
            .ok(
                reqwest::Method::POST,
                &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
                Some(body),
            )
            .await;
        v["Rule"]["id"].as_str().expect("rule id").to_string()
    }
}

pub(crate) struct Perimeter {
    pub(crate) _serve: Proc,
    pub(crate) gateway: Proc,
    pub(crate) proxy: SocketAddr,
    pub(crate) api: Api,
    pub(crate) cluster: String,
    /// Time to create the FQDN rules through the API.
    pub(crate) rules_load: Duration,
}

pub(crate) fn start_perimeter(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    sink_ports: &[u16],
    rules: u64,
    hosts: &Path,
    max_connections: u64,
) -> Perimeter {
    // The gateway measured is the separate process; none runs inside serve. Room for every
    // rule loaded, the CIDR rule and the rules the rule-change runs add.
    let max_rules = (rules + 64).to_string();
    let (serve, api) = start_serve(
        dir,
        &[
            "--no-embedded-gateways",
            "--max-rules-per-cluster",
            &max_rules,
        ],
        RULE_CONCURRENCY,
    );
    use reqwest::Method;
    let (cluster, token, rules_load) = rt.block_on(async {
        let c = api
            .ok(
                Method::POST,
                "/api/v1/clusters",
                Some(json!({"name": "gateway-bench", "provider": "AWS",
                    "spec": {"dedicated": {"region_nodes": {"us-east-1": 1}}}})),
            )
            .await;
        let cid = c["id"].as_str().expect("cluster id").to_string();
        api.ok(
            Method::POST,
            &format!("/api/v1/clusters/{cid}/networking/egress-rules/egress-traffic-policy"),
            Some(json!({"allow_all": false})),
        )
        .await;
        // Loopback is special: only a CIDR rule naming it lets the gateway dial the sinks.
        api.add_rule(
            &cid,
            json!({"name": "loopback-sinks", "type": "CIDR", "destination": "127.0.0.0/8",
                "ports": sink_ports, "description": "bench sinks"}),
        )
        .await;
        // The FQDN rules: the one naming the sinks, then exact names and wildcards elsewhere,
        // RULE_CONCURRENCY requests at a time (the API creates one rule per request).
        let started = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(RULE_CONCURRENCY));
        let api = &api;
        let mut futs = Vec::new();
        for i in 0..rules {
            let sem = sem.clone();
            let cid = cid.clone();
            futs.push(async move {
                let _p = sem.acquire().await.unwrap();
                let body = if i == 0 {
                    json!({"name": "bench-sinks", "type": "FQDN",
                        "destination": format!("*.{SINK_DOMAIN}"), "ports": sink_ports,
                        "description": "the sinks' names"})
                } else {
                    let destination = if i % 2 == 0 {
                        format!("svc-{i}.team{}.bench.example.com", i % 97)
                    } else {
                        format!("*.svc-{i}.team{}.bench.example.net", i % 89)
                    };
                    json!({"name": format!("fqdn-{i:06}"), "type": "FQDN",
                        "destination": destination, "ports": [443],
                        "description": "bench rule"})
                };
                api.add_rule(&cid, body).await;
            });
        }
        futures_join_all(futs).await;
        let rules_load = started.elapsed();
        eprintln!(
            "bench: {rules} FQDN rules created in {:.1} s",
            rules_load.as_secs_f64()
        );
        let g = api
            .ok(
                Method::POST,
                &format!("/api/v1/clusters/{cid}/gateways"),
                Some(json!({"region": "us-east-1", "name": "bench-gw"})),
            )
            .await;
        (
            cid,
            g["token"].as_str().expect("gateway token").to_string(),
            rules_load,
        )
    });

    let mut cmd = Command::new(BIN);
    cmd.args(["gateway", "--control-plane", &api.base, "--token", &token])
        .args(["--listen", "127.0.0.1:0", "--region", "us-east-1"])
        // One thread, as Squid runs one worker: the same CPU budget for both proxies.
        .args(["--worker-threads", "1"])
        // Room for the idle tunnels (the default is 4096).
        .args(["--max-connections", &max_connections.to_string()])
        .arg("--state-dir")
        .arg(dir.join("gw-state"))
        .arg("--hosts-file")
        .arg(hosts)
        // Names outside the hosts file go to nobody on loopback, as for Squid.
        .args(["--dns-server", "127.0.0.1"])
        .env_remove("PERIMETER_CONTROL_PLANE")
        .env_remove("PERIMETER_GATEWAY_TOKEN")
        .env_remove("PERIMETER_LOG_FORMAT")
        // The decision log as deployed: the default filter (info), text, to stderr: its file.
        .env_remove("PERIMETER_LOG");
    let mut gateway = Proc::spawn("perimeter gateway", &mut cmd, dir.join("gateway.log"));
    let proxy: SocketAddr = gateway
        .announced("perimeter: gateway listening on ", 60)
        .parse()
        .expect("the gateway's address");
    Perimeter {
        _serve: serve,
        gateway,
        proxy,
        api,
        cluster,
        rules_load,
    }
}

/// Rule creation until ACTIVE, `n` times; the durations.
pub(crate) fn rule_to_active(
    p: &Perimeter,
    rt: &tokio::runtime::Runtime,
    n: usize,
) -> Vec<Duration> {
    rt.block_on(async {
        let mut out = Vec::new();
        for k in 0..n {
            let started = Instant::now();
            let rid = p
                .api
                .add_rule(
                    &p.cluster,
                    json!({"name": format!("change-{k}"), "type": "FQDN",
                        "destination": format!("change-{k}.bench.example.org"), "ports": [443],
                        "description": "rule change"}),
                )
                .await;
            loop {
                let state = p.api.rule_state(&p.cluster, &rid).await;
                if state == "ACTIVE" {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "rule change-{k} is still {state} after 60 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            out.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        out
    })
}

/// Wait (60 s at most) until a tunnel of `path` goes through the gateway: it then holds the
/// policy.
pub(crate) fn wait_ready(p: &Perimeter, rt: &tokio::runtime::Runtime, dest: &Dest) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rt.block_on(one_tunnel(Via::Proxy(p.proxy), loopback(0), dest)) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!(
                "no tunnel to {} through the gateway after 60 s: {e}; gateway log:\n{}",
                dest.authority,
                p.gateway.log_text()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The SNI is checked: a ClientHello naming another host than the CONNECT closes the tunnel
/// without the sink's answer.
pub(crate) fn sni_mismatch_refused(p: &Perimeter, rt: &tokio::runtime::Runtime, dest: &Dest) {
    use tokio::io::AsyncWriteExt;
    let got = rt.block_on(async {
        let mut s = open(Via::Proxy(p.proxy), loopback(0), dest).await?;
        s.write_all(&client_hello(&format!("other.{SINK_DOMAIN}")))
            .await?;
        tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut s))
            .await
            .map_err(|_| std::io::Error::other("the tunnel stayed open"))?
    });
    match got {
        Ok(bytes) if bytes.is_empty() => {}
        // A reset is a refusal too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "a ClientHello for other.{SINK_DOMAIN} in a tunnel to {} was not refused: {other:?}",
            dest.authority
        ),
    }
}
