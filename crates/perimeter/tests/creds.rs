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
    let before = check();
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
