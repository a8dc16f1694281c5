//! TLS inspection with real object-store clients: curl, the aws CLI and boto3 write through the
//! gateway to an S3-compatible store (moto's server mode) that serves HTTPS with a certificate
//! from its own CA, at `s3.allowed.test:9443` in the upstream namespace, path-style (the bucket
//! is the first path segment). The one rule allows the bucket `backups-bucket` by path; the
//! cluster inspects. The clients trust only the cluster's CA (`AWS_CA_BUNDLE`, boto3's
//! `verify`, curl's `--cacert`); the gateway trusts the store's CA (`--upstream-ca-file`).
//!
//! Writing to `backups-bucket` works (the objects are read back from moto directly, not
//! through the gateway); writing to `other-bucket` on the same host is refused inside the TLS
//! session with 403 and `x-perimeter-error: path_not_allowed`, which each client shows, and
//! moto never sees the request (its request log and the bucket's listing).

use std::path::Path;
use std::process::Command;

use perimeter_testkit::api::{add_rule, wait_rule_active};
use perimeter_testkit::certs::{Validity, authority};
use perimeter_testkit::moto::{Moto, MotoTls, venv_bin};
use perimeter_testkit::{output_within, wait_until};
use serde_json::{Value, json};

use crate::clients::curl_via;
use crate::fixture::{Net, NetOptions};
use crate::inspection::{start_inspecting, turn_on};

const HOST: &str = "s3.allowed.test";
const PORT: u16 = 9443;
const ALLOWED: &str = "backups-bucket";
const OTHER: &str = "other-bucket";

fn endpoint() -> String {
    format!("https://{HOST}:{PORT}")
}

/// The workload's environment for an AWS client: no inherited AWS or proxy settings, dummy
/// keys, us-east-1, one attempt, no metadata service.
fn aws_env(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.to_ascii_lowercase().ends_with("_proxy") {
            c.env_remove(k);
        }
    }
    c.env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "workload-secret")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/perimeter-test-aws-credentials",
        )
}

/// `aws <args> --endpoint-url https://s3.allowed.test:9443` through the gateway, trusting only
/// `ca`, path-style (its config file); 60 s at most. (success, stdout + stderr)
fn aws(proxy: &str, ca: &str, config: &Path, args: &[&str]) -> (bool, String) {
    let mut c = Command::new(venv_bin("aws"));
    aws_env(&mut c)
        .args(args)
        .args(["--endpoint-url", &endpoint()])
        .env("HTTPS_PROXY", format!("http://{proxy}"))
        .env("AWS_CA_BUNDLE", ca)
        .env("AWS_CONFIG_FILE", config);
    let out = output_within(&format!("aws {args:?}"), 60, &mut c, b"");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// boto3 through the gateway (`proxies`), verifying against the cluster CA only, path-style:
/// one write to each bucket; what came of each, as JSON.
const BOTO3: &str = r#"
import json, os, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT"],
    verify=os.environ["CLUSTER_CA"],
    config=Config(
        s3={"addressing_style": "path"},
        proxies={"https": os.environ["GATEWAY"]},
        retries={"max_attempts": 1, "mode": "standard"},
    ),
)
out = {}
for bucket in sys.argv[1:]:
    try:
        r = s3.put_object(Bucket=bucket, Key="boto3/object-1", Body=b"boto3 rows")
        out[bucket] = {"status": r["ResponseMetadata"]["HTTPStatusCode"]}
    except ClientError as e:
        meta = e.response["ResponseMetadata"]
        out[bucket] = {
            "status": meta["HTTPStatusCode"],
            "error": meta["HTTPHeaders"].get("x-perimeter-error"),
            "message": str(e),
        }
print(json.dumps(out))
"#;

fn boto3(proxy: &str, ca: &str, buckets: &[&str]) -> Value {
    let mut c = Command::new(venv_bin("python"));
    aws_env(&mut c)
        .arg("-c")
        .arg(BOTO3)
        .args(buckets)
        .env("S3_ENDPOINT", endpoint())
        .env("CLUSTER_CA", ca)
        .env("GATEWAY", format!("http://{proxy}"))
        .env("AWS_CONFIG_FILE", "/nonexistent/perimeter-test-aws-config");
    let out = output_within("boto3", 60, &mut c, b"");
    assert!(
        out.status.success(),
        "boto3: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("boto3's JSON")
}

/// The keys of `bucket`, read from moto directly (not through the gateway).
fn keys(moto: &Moto, bucket: &str) -> Vec<String> {
    let listed = moto.python(&format!(
        "import boto3, json, os\n\
         s3 = boto3.client('s3', endpoint_url=os.environ['MOTO_URL'])\n\
         print(json.dumps(sorted(o['Key'] for o in s3.list_objects_v2(Bucket='{bucket}').get('Contents', []))))"
    ));
    serde_json::from_str(listed.trim()).expect("keys as JSON")
}

/// The body of `bucket/key`, read from moto directly.
fn object(moto: &Moto, bucket: &str, key: &str) -> String {
    moto.python(&format!(
        "import boto3, os, sys\n\
         s3 = boto3.client('s3', endpoint_url=os.environ['MOTO_URL'])\n\
         sys.stdout.write(s3.get_object(Bucket='{bucket}', Key='{key}')['Body'].read().decode())"
    ))
}

/// The requests moto logged (werkzeug's access log: `"PUT /bucket/key HTTP/1.1" 200`) whose
/// target starts with `prefix`.
fn moto_requests(moto: &Moto, prefix: &str) -> Vec<String> {
    moto.log_text()
        .lines()
        .filter(|l| {
            ["GET", "PUT", "POST", "HEAD", "DELETE"]
                .iter()
                .any(|m| l.contains(&format!("\"{m} {prefix}")))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn object_store_clients_write_only_to_the_allowed_bucket_under_inspection() {
    let net = Net::new(NetOptions::default());
    let allowed = net.a.allowed.to_string();
    // The store's own CA; its certificate names the store and its address (for the direct,
    // verified reads of the checks).
    let store_ca = authority(net.dir.path(), "object-store");
    let leaf = store_ca.issue("s3", &[HOST, &allowed], Validity::Days(2));
    let moto = Moto::start_https(
        &["ip", "netns", "exec", &net.ns],
        &allowed,
        PORT,
        // Path-style requests to a dotted name: the host is not a bucket.
        &[("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")],
        MotoTls {
            cert: leaf.cert,
            key: leaf.key,
            ca: store_ca.cert.clone(),
        },
    );
    moto.python(&format!(
        "import boto3, os\n\
         s3 = boto3.client('s3', endpoint_url=os.environ['MOTO_URL'])\n\
         s3.create_bucket(Bucket='{ALLOWED}')\n\
         s3.create_bucket(Bucket='{OTHER}')"
    ));
    net.add_hosts(net.a.allowed, &[HOST]);
    let p = start_inspecting(&net, "object-store", &store_ca.cert);
    // The bucket itself (listing it) and everything in it.
    let rule = add_rule(
        &p.s,
        &p.key,
        &p.cid,
        json!({"name": "backups-bucket", "type": "FQDN", "destination": HOST, "ports": [PORT],
               "paths": [format!("/{ALLOWED}"), format!("/{ALLOWED}/*")],
               "description": "the backup bucket only"}),
    );
    wait_rule_active(&p.s, &p.key, &p.cid, rule["id"].as_str().expect("id"));
    let ca = turn_on(&p, &net, &[]);
    let proxy = p.gw.proxy.clone();

    // The aws CLI, path-style, trusting only the cluster CA.
    let config = net.dir.path().join("aws-config");
    std::fs::write(&config, "[default]\ns3 =\n    addressing_style = path\n").expect("config");
    let body = net.dir.path().join("backup-1.sst");
    std::fs::write(&body, b"aws cli rows").expect("body");
    let body = body.to_str().expect("UTF-8 path");
    let (ok, out) = aws(
        &proxy,
        &ca,
        &config,
        &[
            "s3",
            "cp",
            body,
            &format!("s3://{ALLOWED}/cli/backup-1.sst"),
        ],
    );
    assert!(ok, "aws s3 cp to the allowed bucket: {out}");
    let (ok, out) = aws(
        &proxy,
        &ca,
        &config,
        &["s3", "ls", &format!("s3://{ALLOWED}/cli/")],
    );
    assert!(ok && out.contains("backup-1.sst"), "aws s3 ls: {out}");
    // Refused: the CLI's error names the 403, and its debug log the gateway's reason.
    let (ok, out) = aws(
        &proxy,
        &ca,
        &config,
        &[
            "s3",
            "cp",
            body,
            &format!("s3://{OTHER}/cli/backup-1.sst"),
            "--debug",
        ],
    );
    assert!(!ok, "aws s3 cp to another bucket went through: {out}");
    assert!(
        out.contains("An error occurred (403) when calling the PutObject operation"),
        "{out}"
    );
    assert!(
        out.contains("'x-perimeter-error': 'path_not_allowed'"),
        "the reason is not in the CLI's output: {out}"
    );

    // boto3, the same way.
    let b = boto3(&proxy, &ca, &[ALLOWED, OTHER]);
    assert_eq!(b[ALLOWED]["status"], 200, "{b:#}");
    assert_eq!(b[OTHER]["status"], 403, "{b:#}");
    assert_eq!(b[OTHER]["error"], "path_not_allowed", "{b:#}");

    // curl, unsigned (moto does not check signatures here), uploading a file (`-T`: a PUT).
    let file = net.dir.path().join("curl-object");
    std::fs::write(&file, b"curl rows").expect("curl's file");
    let file = file.to_str().expect("UTF-8 path");
    // curl chooses HTTP/2 (the aws CLI and boto3 speak HTTP/1.1): the refused upload is
    // answered before its body is read, as RFC 9113 allows, and curl sees the 403.
    let trust = ["--cacert", ca.as_str()];
    for (bucket, status) in [(ALLOWED, 200), (OTHER, 403)] {
        let r = curl_via(
            &proxy,
            &[&trust[..], &["-T", file]].concat(),
            &format!("{}/{bucket}/curl/object-1", endpoint()),
        );
        assert_eq!(r.status(), status, "curl PUT to {bucket}: {}", r.text);
        if status == 403 {
            assert_eq!(r.error().as_deref(), Some("path_not_allowed"), "{}", r.text);
        }
    }

    // What moto holds, read directly: the allowed bucket has the three objects, the other none,
    // and no request for a key of the other bucket ever reached it.
    assert_eq!(
        keys(&moto, ALLOWED),
        ["boto3/object-1", "cli/backup-1.sst", "curl/object-1"]
    );
    assert_eq!(object(&moto, ALLOWED, "cli/backup-1.sst"), "aws cli rows");
    assert_eq!(object(&moto, ALLOWED, "boto3/object-1"), "boto3 rows");
    assert_eq!(object(&moto, ALLOWED, "curl/object-1"), "curl rows");
    assert_eq!(keys(&moto, OTHER), Vec::<String>::new());
    assert!(
        !moto_requests(&moto, &format!("/{ALLOWED}/")).is_empty(),
        "moto's request log has no write to the allowed bucket: the check below would be empty:\n{}",
        moto.log_text()
    );
    let leaked = moto_requests(&moto, &format!("/{OTHER}/"));
    assert!(leaked.is_empty(), "moto saw {leaked:?}");

    // The gateway's decision events: each write with its method, path, verdict and reason.
    wait_until("the writes' decision events", 30, || {
        let d = p.gw.decisions();
        let has = |path: &str, verdict: &str, reason: &str| {
            d.iter().any(|e| {
                e["destination"] == HOST
                    && e["port"] == PORT
                    && e["method"] == "PUT"
                    && e["path"] == path
                    && e["verdict"] == verdict
                    && e["reason"] == reason
            })
        };
        has(
            "/backups-bucket/cli/backup-1.sst",
            "allowed",
            "allowed_by_rule",
        ) && has(
            "/backups-bucket/boto3/object-1",
            "allowed",
            "allowed_by_rule",
        ) && has(
            "/other-bucket/cli/backup-1.sst",
            "denied",
            "path_not_allowed",
        ) && has("/other-bucket/boto3/object-1", "denied", "path_not_allowed")
            && has("/other-bucket/curl/object-1", "denied", "path_not_allowed")
    });
}
