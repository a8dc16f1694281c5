//! Perimeter: the control plane with a cluster, its rules and TLS inspection on, and the
//! gateway as its own process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{Api, start_serve};
use crate::procs::Proc;
use crate::{BIN, INSPECTED, NAMES_DOMAIN, PORT, SPLICED};

impl Api {
    async fn add_rule(&self, cid: &str, body: Value) {
        self.ok(
            Method::POST,
            &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
            Some(body),
        )
        .await;
    }
}

pub(crate) struct Perimeter {
    pub(crate) _serve: Proc,
    pub(crate) gateway: Proc,
    pub(crate) proxy: SocketAddr,
    /// `http://<addr>/metrics` of the gateway.
    pub(crate) metrics: String,
    pub(crate) api: Api,
    pub(crate) cluster: String,
}

/// Start `perimeter serve` (SQLite under `dir`, no embedded gateway), create the cluster
/// (DEFAULT_DENY) and its rules, register a gateway and start it: one worker thread, the
/// decision log at info into its file, names from `hosts`, upstreams verified against
/// `upstream_ca`.
pub(crate) fn start_perimeter(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    hosts: &Path,
    upstream_ca: &Path,
) -> Perimeter {
    // The cluster's CA key is sealed under the secrets key serve makes in its data directory.
    let (serve, api) = start_serve(dir, &["--no-embedded-gateways"], usize::MAX);
    let (cluster, token) = rt.block_on(async {
        let c = api
            .ok(
                Method::POST,
                "/api/v1/clusters",
                Some(json!({"name": "inspection-bench", "provider": "AWS",
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
        for body in [
            // Paths: the gateway must see each request, so it inspects.
            json!({"name": "inspected", "type": "FQDN", "destination": INSPECTED,
                "ports": [PORT], "paths": ["/api/*"], "description": "inspected"}),
            // No paths: a plain CONNECT tunnel, TLS end to end to the upstream.
            json!({"name": "spliced", "type": "FQDN", "destination": SPLICED,
                "ports": [PORT], "description": "spliced"}),
            // The many names of the leaf cache run, inspected.
            json!({"name": "many-names", "type": "FQDN",
                "destination": format!("*.{NAMES_DOMAIN}"), "ports": [PORT],
                "paths": ["/api/*"], "description": "leaf cache run"}),
        ] {
            api.add_rule(&cid, body).await;
        }
        let g = api
            .ok(
                Method::POST,
                &format!("/api/v1/clusters/{cid}/gateways"),
                Some(json!({"region": "us-east-1", "name": "bench-gw"})),
            )
            .await;
        (cid, g["token"].as_str().expect("gateway token").to_string())
    });

    let mut cmd = Command::new(BIN);
    cmd.args(["gateway", "--control-plane", &api.base, "--token", &token])
        .args(["--listen", "127.0.0.1:0", "--region", "us-east-1"])
        .args(["--worker-threads", "1"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.join("gw-state"))
        .arg("--hosts-file")
        .arg(hosts)
        // Names outside the hosts file go to nobody on loopback.
        .args(["--dns-server", "127.0.0.1"])
        .arg("--upstream-ca-file")
        .arg(upstream_ca)
        .env_remove("PERIMETER_CONTROL_PLANE")
        .env_remove("PERIMETER_GATEWAY_TOKEN")
        .env_remove("PERIMETER_LOG_FORMAT")
        // The decision log as deployed: the default filter (info), text, to stderr: its file.
        .env_remove("PERIMETER_LOG");
    let mut gateway = Proc::spawn("perimeter gateway", &mut cmd, dir.join("gateway.log"));
    let metrics = gateway.announced("perimeter: gateway metrics on ", 60);
    let proxy: SocketAddr = gateway
        .announced("perimeter: gateway listening on ", 60)
        .parse()
        .expect("the gateway's address");
    Perimeter {
        _serve: serve,
        gateway,
        proxy,
        metrics,
        api,
        cluster,
    }
}

impl Perimeter {
    /// Turn TLS inspection on, wait (30 s at most) until every gateway applied it
    /// (`propagating: false`); the cluster's CA certificate (PEM) and how long it took.
    pub(crate) fn enable_inspection(&self, rt: &tokio::runtime::Runtime) -> (String, Duration) {
        let path = format!(
            "/api/v1/clusters/{}/networking/tls-inspection",
            self.cluster
        );
        rt.block_on(async {
            let started = Instant::now();
            // 409 while the cluster is locked: the traffic policy set a moment ago is still on
            // its way to the gateway.
            let on = loop {
                let (status, v) = self
                    .api
                    .call(Method::PUT, &path, Some(json!({"enabled": true})))
                    .await;
                match status {
                    200..300 => break v,
                    409 if started.elapsed() < Duration::from_secs(30) => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    _ => panic!("PUT {path}: {status} {v}"),
                }
            };
            assert_eq!(on["enabled"], true, "{on}");
            loop {
                let v = self.api.ok(Method::GET, &path, None).await;
                if v["propagating"] == false {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "TLS inspection still propagating after 30 s: {v}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let propagated = started.elapsed();
            let r = self
                .api
                .http
                .get(format!("{}{path}/ca.pem", self.api.base))
                .bearer_auth(&self.api.key)
                .send()
                .await
                .expect("GET ca.pem");
            assert_eq!(r.status().as_u16(), 200, "GET {path}/ca.pem");
            (r.text().await.expect("the CA's PEM"), propagated)
        })
    }

    /// The gateway's leaf cache counters: (hits, misses).
    pub(crate) fn leaf_cache(&self, rt: &tokio::runtime::Runtime) -> (u64, u64) {
        let text = rt.block_on(async {
            self.api
                .http
                .get(&self.metrics)
                .send()
                .await
                .expect("GET the gateway's metrics")
                .text()
                .await
                .expect("the gateway's metrics")
        });
        let counter = |result: &str| -> u64 {
            text.lines()
                .filter(|l| l.starts_with("perimeter_inspection_leaf_cache_total{"))
                .filter(|l| l.contains(&format!("result=\"{result}\"")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        (counter("hit"), counter("miss"))
    }
}
