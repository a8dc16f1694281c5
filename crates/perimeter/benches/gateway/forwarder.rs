//! The private endpoint forwarder: an endpoint service whose one backend is the bulk sink, an
//! endpoint of the bench's cluster to it, AVAILABLE once the gateway serves it; bulk then goes
//! through the gateway as `CONNECT <endpoint_address>:<port>`, in the same rounds and under the
//! same congestion control as direct and the egress path (`CONNECT 127.0.0.1:<port>`, which the
//! CIDR rule admits), so both ratios come from figures measured side by side.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::perimeter::Perimeter;

/// Register the sink as an endpoint service and wait until the cluster's endpoint to it is
/// AVAILABLE; the CONNECT target that reaches the sink through the forwarder.
pub(crate) fn forwarder_target(
    p: &Perimeter,
    rt: &tokio::runtime::Runtime,
    sink: SocketAddr,
) -> String {
    rt.block_on(async {
        let service = "com.amazonaws.vpce.us-east-1.vpce-svc-benchbulksink";
        p.api
            .ok(
                Method::POST,
                "/api/v1/endpoint-services",
                Some(json!({"service_name": service, "region": "us-east-1", "backends": [sink.to_string()], "allow_special_addresses": true})),
            )
            .await;
        let endpoints = format!(
            "/api/v1/clusters/{}/networking/egress-private-endpoints",
            p.cluster
        );
        // The cluster is locked (409) while its traffic policy change propagates.
        let deadline = Instant::now() + Duration::from_secs(60);
        let body = json!({"region": "us-east-1", "target_service_identifier": service, "target_service_type": "PRIVATE_SERVICE"});
        let ep = loop {
            let (status, ep) = p.api.call(Method::POST, &endpoints, Some(body.clone())).await;
            match status {
                200..=299 => break ep,
                409 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => panic!("creating the bench's private endpoint: {status} {ep}"),
            }
        };
        let id = ep["id"].as_str().expect("endpoint id").to_string();
        loop {
            let ep = p
                .api
                .ok(Method::GET, &format!("{endpoints}/{id}"), None)
                .await;
            if ep["state"] == "AVAILABLE" {
                let address = ep["endpoint_address"].as_str().unwrap_or_default();
                return format!("{address}:{}", sink.port());
            }
            assert!(
                Instant::now() < deadline,
                "the bench's private endpoint is not AVAILABLE after 60 s: {ep}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}
