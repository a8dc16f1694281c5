//! End to end: `perimeter creds check` on the real binary. Without --cluster it judges the URI
//! alone (redacted, auth, role chain, destinations); with --cluster it asks a `perimeter serve`
//! on loopback: the storage destination is denied before an egress rule names it, the command
//! it suggests adds that rule, and the destination is allowed after.

use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use perimeter_testkit::Server as Serve;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const EXTERNAL_ID: &str = "tenant-4242-external";

/// The URI under test: implicit credentials, a two-role chain, an external id on the first.
fn chained_uri() -> String {
    "s3://backups-1/cluster-7?AUTH=implicit&AWS_REGION=us-east-1\
     &ASSUME_ROLE=arn:aws:iam::123456789012:role/backup;external_id=tenant-4242-external,\
     arn:aws:iam::210987654321:role/restore"
        .to_string()
}

#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut cmd: Command) -> Outcome {
    let out = cmd.stdin(Stdio::null()).output().expect("run perimeter");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(o: &Outcome) -> Value {
    assert_eq!(o.code, 0, "{o:#?}");
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {o:#?}"))
}

#[test]
fn check_without_a_cluster_redacts_and_lists() {
    let o = run({
        let mut c = Command::new(BIN);
        c.args(["creds", "check", &chained_uri(), "--output", "json"]);
        c
    });
    let v = json(&o);
    assert_eq!(v["scheme"], "s3");
    assert_eq!(v["auth"], "implicit");
    assert_eq!(
        v["role_chain"],
        serde_json::json!([
            {"principal": "arn:aws:iam::123456789012:role/backup", "external_id": "present"},
            {"principal": "arn:aws:iam::210987654321:role/restore", "external_id": "absent"},
        ])
    );
    assert_eq!(
        v["destinations"][0]["host"],
        "backups-1.s3.us-east-1.amazonaws.com"
    );
    assert_eq!(v["destinations"][0]["port"], 443);
    assert_eq!(v["destinations"][1]["host"], "sts.us-east-1.amazonaws.com");
    assert!(!o.stdout.contains(EXTERNAL_ID), "{o:#?}");
    assert!(
        v["uri"]
            .as_str()
            .unwrap_or("")
            .contains("external_id=redacted"),
        "{v:#}"
    );

    // An invalid URI: exit 1, the part at fault named, the secret nowhere.
    let bad = format!(
        "s3://backups-1?AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE&AWS_SECRET_ACCESS_KEY={}&AUTH=implicit",
        SECRET.replace('/', "%2F").replace('+', "%2B")
    );
    let o = run({
        let mut c = Command::new(BIN);
        c.args(["creds", "check", &bad]);
        c
    });
    assert_eq!(o.code, 1, "{o:#?}");
    assert!(
        o.stderr
            .contains("error: AWS_ACCESS_KEY_ID: not accepted with AUTH=implicit"),
        "{o:#?}"
    );
    assert!(
        o.stderr.contains("AWS_SECRET_ACCESS_KEY=redacted"),
        "{o:#?}"
    );
    for form in [SECRET, "wJalrXUtnFEMI", "EXAMPLEKEY"] {
        assert!(
            !o.stderr.contains(form) && !o.stdout.contains(form),
            "{o:#?}"
        );
    }

    // From stdin, so that the URI stays off the command line.
    let mut child = Command::new(BIN)
        .args(["creds", "check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(
            stdin,
            "webhook-https://hooks.example.com:8443/services/T0/B0/tok3n"
        )
        .expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("hooks.example.com:8443  webhook"),
        "{stdout}"
    );
    assert!(!stdout.contains("tok3n"), "{stdout}");
}

#[test]
fn check_with_a_cluster_denied_then_allowed() {
    let dir = TempDir::new().expect("temp dir");
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "203.0.113.20 backups-1.s3.us-east-1.amazonaws.com\n203.0.113.21 sts.us-east-1.amazonaws.com\n",
    )
    .expect("hosts file");
    let dns = perimeter_testkit::dns::nxdomain_dns();
    let serve = Serve::start(
        BIN,
        &dir.path().join("perimeter-data"),
        &[
            "--hosts-file",
            hosts.to_str().expect("UTF-8 path"),
            "--dns-server",
            &dns,
            "--dns-timeout-ms",
            "2000",
        ],
        &[("PERIMETER_LOG", "warn")],
    );
    let (url, key) = (serve.url(), serve.admin_key_file());
    let cli = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(dir.path())
            .env("PERIMETER_URL", &url)
            .env("PERIMETER_API_KEY", &key);
        run(c)
    };
    let ok = |o: Outcome| {
        assert_eq!(o.code, 0, "{o:#?}");
        o
    };
    ok(cli(&[
        "clusters",
        "create",
        "creds-e2e",
        "--provider",
        "AWS",
        "--region",
        "us-east-1=1",
    ]));
    ok(cli(&[
        "egress-policy",
        "set",
        "creds-e2e",
        "--default-deny",
    ]));

    let uri = chained_uri();
    let check = || {
        json(&cli(&[
            "creds",
            "check",
            &uri,
            "--cluster",
            "creds-e2e",
            "--output",
            "json",
        ]))
    };
    // The platform's functional role for backups heads the chain the cluster's jobs assume.
    ok(cli(&[
        "clusters",
        "credential-roles",
        "creds-e2e",
        "--set",
        "backup=arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}",
    ]));
    let before = check();
    let chain = before["role_chain"].as_array().expect("chain");
    assert_eq!(chain.len(), 3, "{before:#}");
    assert_eq!(chain[0]["functional_role"], "backup", "{before:#}");
    assert!(
        chain[0]["principal"]
            .as_str()
            .is_some_and(|p| p.starts_with("arn:aws:iam::123456789012:role/crl-dr-store-user-")),
        "{before:#}"
    );
    assert_eq!(
        chain[1]["principal"],
        "arn:aws:iam::123456789012:role/backup"
    );
    let changefeed = json(&cli(&[
        "creds",
        "check",
        &uri,
        "--cluster",
        "creds-e2e",
        "--purpose",
        "changefeed",
        "--output",
        "json",
    ]));
    assert_eq!(
        changefeed["role_chain"].as_array().map(Vec::len),
        Some(2),
        "no functional role for changefeeds: {changefeed:#}"
    );
    // creds serve reads the same role from the control plane; a purpose without one is
    // refused at start, naming the profile and the command that sets it.
    let config = dir.path().join("creds.toml");
    std::fs::write(
        &config,
        format!(
            "[control_plane]\nurl = \"{url}\"\napi_key_file = \"{}\"\n\n\
             [profiles.cdc]\nuri = \"{uri}\"\ncluster = \"creds-e2e\"\npurpose = \"changefeed\"\n",
            dir.path().join("perimeter-data/admin-api-key").display()
        ),
    )
    .expect("config");
    let o = run({
        let mut c = Command::new(BIN);
        c.args(["creds", "serve", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--token-file"])
            .arg(dir.path().join("token"));
        c
    });
    assert_eq!(o.code, 1, "{o:#?}");
    assert!(
        o.stderr.contains(
            "profiles.cdc.cluster: cluster creds-e2e has no functional role for changefeed \
             (set one: perimeter clusters credential-roles creds-e2e --set"
        ),
        "{o:#?}"
    );
    let storage = &before["destinations"][0];
    assert_eq!(
        storage["host"], "backups-1.s3.us-east-1.amazonaws.com",
        "{before:#}"
    );
    assert_eq!(storage["egress"]["allowed"], false, "{before:#}");
    assert_eq!(
        storage["egress"]["reason"], "no_rule_for_destination",
        "{before:#}"
    );
    let suggested = storage["egress"]["rule_to_add"]
        .as_str()
        .expect("a rule to add")
        .to_string();
    assert!(
        suggested
            .contains("--type FQDN --destination backups-1.s3.us-east-1.amazonaws.com --port 443"),
        "{suggested}"
    );
    assert_eq!(
        before["destinations"][1]["egress"]["allowed"], false,
        "{before:#}"
    );
    // The table says the same, and prints the command.
    let table = ok(cli(&["creds", "check", &uri, "--cluster", "creds-e2e"]));
    assert!(
        table.stdout.contains("to allow what the policy does not:"),
        "{table:#?}"
    );
    assert!(table.stdout.contains(&suggested), "{table:#?}");
    assert!(
        table
            .stdout
            .contains("(external id: absent, the cluster's functional role for backup)"),
        "{table:#?}"
    );
    assert!(!table.stdout.contains(EXTERNAL_ID), "{table:#?}");

    // Run the suggested command as printed (through sh, for its quoting).
    let command = suggested
        .strip_prefix("perimeter ")
        .expect("starts with perimeter");
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("\"$PERIMETER_BIN\" {command}"))
        .env("PERIMETER_BIN", BIN)
        .current_dir(dir.path())
        .env("PERIMETER_URL", &url)
        .env("PERIMETER_API_KEY", &key);
    ok(run(sh));

    let after = check();
    let storage = &after["destinations"][0];
    assert_eq!(storage["egress"]["allowed"], true, "{after:#}");
    assert_eq!(storage["egress"]["reason"], "allowed_by_rule", "{after:#}");
    assert_eq!(
        storage["egress"]["rule"], "backups-1.s3.us-east-1.amazonaws.com-443",
        "{after:#}"
    );
    assert!(storage["egress"].get("rule_to_add").is_none(), "{after:#}");
    // STS is still not allowed: the rule named the storage host only.
    assert_eq!(
        after["destinations"][1]["egress"]["allowed"], false,
        "{after:#}"
    );

    // An unknown cluster: the lookup fails with exit 1.
    let o = cli(&["creds", "check", &uri, "--cluster", "nope"]);
    assert_eq!(o.code, 1, "{o:#?}");
    drop(serve);
}

const BASE_KEY: &str = "AKIABASEBASEBASE0001";
const BASE_SECRET: &str = "base-secret-never-served";
const SERVE_EXTERNAL_ID: &str = "ext-tenant-77";

/// The profile of the `creds serve` tests: implicit base credentials (the environment's), the
/// platform's functional role first, then the customer's role with an external id.
fn serve_config(sts_url: &str) -> String {
    format!(
        "[sts]\nendpoint_url = \"{sts_url}\"\n\n[profiles.backup]\n\
         uri = \"s3://perimeter-backups/c1?AUTH=implicit&AWS_REGION=us-east-1\
         &ASSUME_ROLE=arn:aws:iam::123456789012:role/backup;external_id={SERVE_EXTERNAL_ID}\"\n\
         functional_role = \"arn:aws:iam::999999999999:role/crl-dr-store-user-c1\"\n"
    )
}

/// A command of the venv (python, aws) configured only with the credential endpoint: no keys,
/// no config files, no instance metadata.
fn endpoint_client(
    program: &str,
    creds: &perimeter_testkit::creds::CredsServe,
    token: &str,
) -> Command {
    let mut c = Command::new(perimeter_testkit::moto::venv_bin(program));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.to_ascii_lowercase().ends_with("_proxy") {
            c.env_remove(k);
        }
    }
    c.env("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds.uri("backup"))
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/perimeter-test-aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/perimeter-test-aws-credentials",
        )
        .env("AWS_DEFAULT_REGION", "us-east-1");
    c
}

#[test]
fn serve_hands_boto3_the_chained_role_and_refuses_without_the_token() {
    let moto = perimeter_testkit::moto::Moto::start();
    let dir = TempDir::new().expect("temp dir");
    let creds = perimeter_testkit::creds::CredsServe::start(
        BIN,
        dir.path(),
        &serve_config(&moto.url()),
        &[
            ("AWS_ACCESS_KEY_ID", BASE_KEY),
            ("AWS_SECRET_ACCESS_KEY", BASE_SECRET),
        ],
    );
    assert!(
        creds.banner.contains(
            "profile backup: implicit -> arn:aws:iam::999999999999:role/crl-dr-store-user-c1 \
             -> arn:aws:iam::123456789012:role/backup (external id)"
        ),
        "{}",
        creds.banner
    );

    // boto3, knowing only the endpoint, is the customer's role, reached through the platform's.
    let script = format!(
        "import boto3\n\
         sts = boto3.client('sts', endpoint_url='{url}')\n\
         print(sts.get_caller_identity()['Arn'])\n\
         s3 = boto3.client('s3', endpoint_url='{url}')\n\
         s3.create_bucket(Bucket='perimeter-backups')\n\
         s3.put_object(Bucket='perimeter-backups', Key='c1/backup-1', Body=b'rows')\n\
         print(s3.get_object(Bucket='perimeter-backups', Key='c1/backup-1')['Body'].read().decode())\n",
        url = moto.url()
    );
    let out = endpoint_client("python", &creds, &creds.token)
        .args(["-c", &script])
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "arn:aws:sts::123456789012:assumed-role/backup/perimeter",
            "rows"
        ]
    );

    // moto saw the chain: the functional role (no external id), then the customer's role.
    let data: Value = serde_json::from_str(&moto.python(
        "import os, urllib.request\n\
         print(urllib.request.urlopen(os.environ['MOTO_URL'] + '/moto-api/data.json').read().decode())",
    ))
    .expect("moto data");
    let assumed: Vec<(String, Value)> = data["sts"]["AssumedRole"]
        .as_array()
        .expect("assumed roles")
        .iter()
        .map(|r| {
            (
                r["role_arn"].as_str().unwrap_or("").to_string(),
                r["external_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        assumed,
        [
            (
                "arn:aws:iam::999999999999:role/crl-dr-store-user-c1".to_string(),
                Value::Null
            ),
            (
                "arn:aws:iam::123456789012:role/backup".to_string(),
                Value::from(SERVE_EXTERNAL_ID)
            ),
        ],
        "one assumption of the chain served every call"
    );

    // The protocol's refusals.
    let get = |auth: Option<&str>, profile: &str| {
        let url = creds.uri(profile);
        let mut args = vec![];
        let header;
        if let Some(a) = auth {
            header = format!("Authorization: {a}");
            args.extend(["-H", &header]);
        }
        args.push(&url);
        perimeter_testkit::curl(&args).0
    };
    assert_eq!(get(None, "backup"), 401);
    assert_eq!(get(Some("wrong-token"), "backup"), 401);
    assert_eq!(get(Some(&format!("{}x", creds.token)), "backup"), 401);
    assert_eq!(get(Some(&creds.token), "restore"), 404);
    let (code, body) = perimeter_testkit::curl(&[
        "-H",
        &format!("Authorization: {}", creds.token),
        &creds.uri("backup"),
    ]);
    assert_eq!(code, 200, "{body}");
    let served: Value = serde_json::from_str(&body).expect("credentials JSON");
    for field in [
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
        "RoleArn",
    ] {
        assert!(
            served[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {served}"
        );
    }
    assert_ne!(
        served["AccessKeyId"], BASE_KEY,
        "never the base credentials"
    );

    // The log tells what was served and refused, and holds no secret.
    perimeter_testkit::wait_until("the log records the refusals", 10, || {
        creds.log_text().contains("missing or wrong token")
    });
    let log = creds.log_text();
    assert!(log.contains("credentials served"), "{log}");
    for secret in [
        BASE_SECRET,
        SERVE_EXTERNAL_ID,
        creds.token.as_str(),
        served["SecretAccessKey"].as_str().unwrap_or("-"),
        served["Token"].as_str().unwrap_or("-"),
    ] {
        assert!(!log.contains(secret), "the log holds a secret: {log}");
    }
}

#[test]
fn serve_binds_beyond_loopback_only_when_told() {
    let dir = TempDir::new().expect("temp dir");
    let config = dir.path().join("creds.toml");
    std::fs::write(&config, serve_config("http://127.0.0.1:9")).expect("config");
    let o = run({
        let mut c = Command::new(BIN);
        c.args(["creds", "serve", "--config"])
            .arg(&config)
            .args(["--listen", "0.0.0.0:0", "--token-file"])
            .arg(dir.path().join("token"));
        c
    });
    assert_eq!(o.code, 1, "{o:#?}");
    assert!(
        o.stderr
            .contains("listen: 0.0.0.0:0 is not a loopback address; set allow_remote = true"),
        "{o:#?}"
    );
    assert!(
        !dir.path().join("token").exists(),
        "nothing made before the refusal"
    );
}
