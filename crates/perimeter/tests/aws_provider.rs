//! `perimeter serve --provider aws` as a process: a bad or inconsistent configuration is
//! refused at start with the key at fault; a good one drives the walkthrough of
//! `docs/aws-provider.md` against moto (PrivateLink behaviour) with credentials from the
//! standard AWS chain (the environment) and the aws CLI as the service's owner.

use std::process::Command;

use perimeter_testkit::moto::{Moto, venv_bin};
use perimeter_testkit::{Server, api, ok, wait_until};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

/// `serve` with this configuration text: its exit status and what it said.
fn refused(config: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provider.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
        .arg("--provider-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a bad configuration must stop serve");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_configurations_are_refused_naming_the_key() {
    let good = "[regions.us-east-1]\nvpc_id = \"vpc-0123456789abcdef0\"\nsubnet_ids = [\"subnet-0123456789abcdef0\"]\n";
    for (config, key) in [
        (
            good.replace("vpc-0123", "vpn-0123"),
            "regions.us-east-1.vpc_id",
        ),
        (good.replace("subnet_ids", "subnets"), "regions.us-east-1"),
        (
            format!(
                "{good}nlb_arns = [\"arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/x/1\"]\n"
            ),
            "regions.us-east-1.nlb_arns[0]",
        ),
        (
            format!("endpoint_url = \"localhost:5000\"\n{good}"),
            "endpoint_url",
        ),
        (String::new(), "regions"),
    ] {
        let err = refused(&config, &["--provider", "aws"]);
        assert!(err.contains(&format!("key {key}")), "{key}: {err}");
    }
    let err = refused(good, &[]);
    assert!(err.contains("--provider aws"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--provider",
            "aws",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--provider-config"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The aws CLI of the test environment, as the endpoint service's owner, against moto.
fn aws_cli(moto: &Moto, args: &[&str]) -> serde_json::Value {
    let out = Command::new(venv_bin("aws"))
        .args([
            "--endpoint-url",
            &moto.url(),
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "owner-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        json!(null)
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

#[test]
fn walkthrough_on_moto() {
    let moto = Moto::start_privatelink();
    let config = moto.aws_platform(&["us-east-1"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provider.toml");
    std::fs::write(&file, &config).unwrap();
    let s = Server::start(
        BIN,
        &dir.path().join("data"),
        &[
            "--provider",
            "aws",
            "--provider-config",
            file.to_str().unwrap(),
            "--provider-poll-ms",
            "100",
        ],
        // The standard chain: keys in the environment.
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "platform-secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let key = s.admin_key_file();
    let c = ok(
        &s,
        &key,
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "walkthrough", "provider": "AWS", "spec": {"dedicated": {"region_nodes": {"us-east-1": 3}}}})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The service's owner: an endpoint service on a network load balancer, acceptance
    // required.
    let subnet = aws_cli(&moto, &["ec2", "describe-subnets"])["Subnets"][0]["SubnetId"]
        .as_str()
        .unwrap()
        .to_string();
    let nlb = aws_cli(
        &moto,
        &[
            "elbv2",
            "create-load-balancer",
            "--name",
            "kafka",
            "--type",
            "network",
            "--subnets",
            &subnet,
        ],
    )["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_string();
    let svc = aws_cli(
        &moto,
        &[
            "ec2",
            "create-vpc-endpoint-service-configuration",
            "--network-load-balancer-arns",
            &nlb,
            "--acceptance-required",
        ],
    )["ServiceConfiguration"]
        .clone();
    let (svc_id, svc_name) = (
        svc["ServiceId"].as_str().unwrap().to_string(),
        svc["ServiceName"].as_str().unwrap().to_string(),
    );
    let base = format!("/api/v1/clusters/{c}/networking/egress-private-endpoints");
    let ep = ok(
        &s,
        &key,
        "POST",
        &base,
        Some(
            json!({"region": "us-east-1", "target_service_identifier": svc_name, "target_service_type": "PRIVATE_SERVICE"}),
        ),
    );
    let path = format!("{base}/{}", ep["id"].as_str().unwrap());
    let state = |want: &str| {
        wait_until(&format!("endpoint {want}"), 30, || {
            ok(&s, &key, "GET", &path, None)["state"] == want
        });
        ok(&s, &key, "GET", &path, None)
    };
    let waiting = state("PENDING_ACCEPTANCE");
    let vpce = waiting["endpoint_connection_id"]
        .as_str()
        .unwrap()
        .to_string();
    aws_cli(
        &moto,
        &[
            "ec2",
            "accept-vpc-endpoint-connections",
            "--service-id",
            &svc_id,
            "--vpc-endpoint-ids",
            &vpce,
        ],
    );
    let available = state("AVAILABLE");
    assert!(
        available["endpoint_address"]
            .as_str()
            .unwrap()
            .starts_with(&vpce)
    );
    let (st, b) = api(
        &s,
        &key,
        "PATCH",
        &path,
        Some(json!({"domain_names": ["*.kafka.example.com"]})),
    );
    assert_eq!(st, 200, "{b}");
    wait_until("domain names AVAILABLE", 30, || {
        ok(&s, &key, "GET", &path, None)["domain_names_state"] == "AVAILABLE"
    });
    let zones = aws_cli(&moto, &["route53", "list-hosted-zones"]);
    let zone = zones["HostedZones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["Name"] == "kafka.example.com.")
        .expect("a private hosted zone for the domain")
        .clone();
    assert_eq!(zone["Config"]["PrivateZone"], true);
    let records = aws_cli(
        &moto,
        &[
            "route53",
            "list-resource-record-sets",
            "--hosted-zone-id",
            zone["Id"].as_str().unwrap(),
        ],
    );
    assert!(
        records["ResourceRecordSets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| {
                r["Type"] == "CNAME"
                    && r["ResourceRecords"][0]["Value"] == available["endpoint_address"]
            }),
        "{records}"
    );
    // Deleted and followed to the end, the zone with it.
    let (st, b) = api(&s, &key, "DELETE", &path, None);
    assert_eq!(st, 200, "{b}");
    wait_until("the endpoint gone", 30, || {
        api(&s, &key, "GET", &path, None).0 == 404
    });
    let zones = aws_cli(&moto, &["route53", "list-hosted-zones"]);
    assert!(
        !zones.to_string().contains("kafka.example.com"),
        "the zone goes with its last name: {zones}"
    );
    let left = aws_cli(&moto, &["ec2", "describe-vpc-endpoints"]);
    assert!(
        !left.to_string().contains(&vpce),
        "the interface endpoint is gone at AWS: {left}"
    );
}
