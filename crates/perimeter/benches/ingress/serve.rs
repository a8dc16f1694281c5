//! `perimeter serve` with its embedded gateway, set up through the API as users do: a cluster,
//! its workload address, an IP allowlist of many entries.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{futures_join_all, start_serve};
use crate::procs::Proc;
use crate::{ALLOWLIST_CONCURRENCY, REGION};

pub(crate) struct Ingress {
    /// `perimeter serve`: control plane and the embedded gateway the ingress runs go through.
    pub(crate) serve: Proc,
    /// The region's `sql_ingress_address`.
    pub(crate) sql: SocketAddr,
    /// Time to create the allowlist entries through the API.
    pub(crate) allowlist_load: Duration,
    /// From the last entry created to the allowlist reading `propagating: false`.
    pub(crate) propagated: Duration,
}

/// The network of allowlist entry `i` of `n` (address, mask): `10.x.y.0/24` for all but the
/// last, which is `127.0.0.0/8` (the bench's clients). HAProxy's ACL file lists the same.
pub(crate) fn entry_cidr(i: u64, n: u64) -> (String, u8) {
    if i + 1 == n {
        ("127.0.0.0".into(), 8)
    } else {
        (format!("10.{}.{}.0", i / 256, i % 256), 24)
    }
}

/// The allowlist entry `i` of `n` ([`entry_cidr`]). All of them open the `sql` listener.
fn entry(i: u64, n: u64) -> Value {
    let (ip, mask) = entry_cidr(i, n);
    if i + 1 == n {
        return json!({"cidr_ip": ip, "cidr_mask": mask, "name": "bench clients",
            "sql": true, "ui": false});
    }
    json!({"cidr_ip": ip, "cidr_mask": mask, "name": format!("office-{i:05}"), "sql": true,
        "ui": i.is_multiple_of(2)})
}

/// Poll `what` every 50 ms until it returns `Some`, for `secs` at most.
async fn poll<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not after {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start `perimeter serve` (SQLite under `dir`, embedded gateways), create one cluster in
/// [`REGION`], point its `sql` workload address at `workload`, load `entries` allowlist
/// entries and wait until every gateway applied them.
pub(crate) fn start_ingress(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    workload: SocketAddr,
    entries: u64,
) -> Ingress {
    // The ingress decision log as deployed: the default filter (info), text, to stderr: its
    // file.
    let (serve, api) = start_serve(dir, &[], ALLOWLIST_CONCURRENCY);
    let (sql, allowlist_load, propagated) = rt.block_on(async {
        let api = &api;
        let c = api
            .ok(
                Method::POST,
                "/api/v1/clusters",
                Some(json!({"name": "ingress-bench", "provider": "AWS",
                    "spec": {"dedicated": {"region_nodes": {REGION: 1}}}})),
            )
            .await;
        let cid = c["id"].as_str().expect("cluster id").to_string();
        let cluster = format!("/api/v1/clusters/{cid}");
        let cluster = &cluster;
        let sql: SocketAddr = poll("the region's sql ingress listener", 60, || async move {
            let c = api.ok(Method::GET, cluster, None).await;
            let region = c["regions"]
                .as_array()?
                .iter()
                .find(|r| r["name"] == REGION)?;
            region["sql_ingress_address"].as_str()?.parse().ok()
        })
        .await;
        let w = api
            .ok(
                Method::PUT,
                &format!("{cluster}/workload"),
                Some(json!({"regions": {REGION: {"sql": workload.to_string(), "ui": ""}}})),
            )
            .await;
        assert_eq!(w["regions"][REGION]["sql"], workload.to_string(), "{w}");
        // One entry per request (the API has no bulk call), ALLOWLIST_CONCURRENCY at a time.
        let allowlist = format!("{cluster}/networking/allowlist");
        let started = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(ALLOWLIST_CONCURRENCY));
        let allowlist = &allowlist;
        let futs: Vec<_> = (0..entries)
            .map(|i| {
                let sem = sem.clone();
                async move {
                    let _p = sem.acquire().await.unwrap();
                    api.ok(Method::POST, allowlist, Some(entry(i, entries)))
                        .await;
                }
            })
            .collect();
        futures_join_all(futs).await;
        let allowlist_load = started.elapsed();
        let settled = Instant::now();
        poll(
            "the allowlist to read propagating: false",
            60,
            || async move {
                let v = api.ok(Method::GET, allowlist, None).await;
                (v["propagating"] == false).then_some(())
            },
        )
        .await;
        (sql, allowlist_load, settled.elapsed())
    });
    Ingress {
        serve,
        sql,
        allowlist_load,
        propagated,
    }
}
