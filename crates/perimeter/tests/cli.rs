//! End to end: `perimeter serve` on loopback with a fresh data dir, driven by the client
//! subcommands of the same binary through PERIMETER_URL and PERIMETER_API_KEY.

use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use perimeter_testkit::Server as Serve;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

/// `perimeter serve` (the testkit's) with the admin key, and the directory CLI runs start in.
struct Server {
    serve: Serve,
    url: String,
    key: String,
    /// Holds `perimeter-data/` (the store and the admin key); CLI runs start here.
    dir: TempDir,
}

/// What a CLI run printed and how it ended.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    #[track_caller]
    fn ok(self) -> Outcome {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }

    #[track_caller]
    fn failed(self, code: i32) -> Outcome {
        assert_eq!(self.code, code, "wrong exit status: {self:#?}");
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Names the server's gateways (and egress-check) resolve: its hosts file. Every other name
/// gets NXDOMAIN from a DNS server on loopback, never the machine's resolver.
const HOSTS: &str = "203.0.113.10 cidr.test.example\n127.0.0.1 loop.test.example\n";

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, HOSTS).expect("hosts file");
        let dns = perimeter_testkit::dns::nxdomain_dns();
        let serve = Serve::start(
            BIN,
            &dir.path().join("perimeter-data"),
            &[
                "--hosts-file",
                hosts.to_str().expect("a UTF-8 path"),
                "--dns-server",
                &dns,
                "--dns-timeout-ms",
                "2000",
            ],
            &[("PERIMETER_LOG", "warn")],
        );
        let (url, key) = (serve.url(), serve.admin_key_file());
        Server {
            serve,
            url,
            key,
            dir,
        }
    }

    /// Run the CLI against this server.
    fn cli(&self, args: &[&str]) -> Outcome {
        self.cli_with(args, |_| {})
    }

    /// Run the CLI with the environment adjusted by `env` (after URL and key are set).
    fn cli_with(&self, args: &[&str], env: impl FnOnce(&mut Command)) -> Outcome {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("PERIMETER_URL", &self.url)
            .env("PERIMETER_API_KEY", &self.key)
            .stdin(Stdio::null());
        env(&mut cmd);
        run(cmd)
    }
}

fn run(mut cmd: Command) -> Outcome {
    let out = cmd.output().expect("run perimeter");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect()
}

/// The cell of `row` in the column whose header is `column` (columns are aligned).
fn cell<'a>(header: &str, row: &'a str, column: &str) -> &'a str {
    let start = header.find(column).expect("column in header");
    row[start..].split_whitespace().next().unwrap_or("")
}

#[test]
fn clusters_rules_and_traffic_policy() {
    let srv = Server::start();
    let created = srv
        .cli(&[
            "clusters",
            "create",
            "cli-rules",
            "--provider",
            "aws",
            "--region",
            "us-east-1=3",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let cluster_id = created["id"].as_str().expect("cluster id").to_string();
    assert_eq!(created["name"], "cli-rules");
    assert_eq!(created["regions"][0]["node_count"], 3);
    let listed = srv.cli(&["clusters", "list"]).ok().stdout;
    assert!(listed.starts_with("NAME "), "{listed}");
    assert!(listed.contains("cli-rules") && listed.contains(&cluster_id));
    let got = srv
        .cli(&["clusters", "get", "cli-rules", "--output", "json"])
        .ok()
        .json();
    assert_eq!(got["id"], cluster_id.as_str());

    // Without --port the CLI refuses: a rule without ports would allow every port.
    let refused = srv
        .cli(&[
            "egress-rules",
            "add",
            "cli-rules",
            "--name",
            "web",
            "--type",
            "FQDN",
            "--destination",
            "api.example.com",
        ])
        .failed(2);
    assert!(
        refused.stderr.contains("--port") && refused.stderr.contains("--all-ports"),
        "{refused:#?}"
    );

    let web = srv
        .cli(&[
            "egress-rules",
            "add",
            "cli-rules",
            "--name",
            "web",
            "--type",
            "FQDN",
            "--destination",
            "api.example.com",
            "--port",
            "443",
            "--port",
            "80",
            "--path",
            "/v1/*",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(web["Rule"]["ports"], serde_json::json!([443, 80]));
    assert_eq!(web["Rule"]["paths"], serde_json::json!(["/v1/*"]));
    let web_id = web["Rule"]["id"].as_str().expect("rule id").to_string();

    let every = srv
        .cli(&[
            "egress-rules",
            "add",
            &cluster_id,
            "--name",
            "every-port",
            "--type",
            "fqdn",
            "--destination",
            "*.example.org",
            "--all-ports",
            "--output",
            "json",
        ])
        .ok();
    assert_eq!(every.json()["Rule"]["ports"], serde_json::json!([]));
    assert!(
        every.stderr.contains("warning:") && every.stderr.contains("every port"),
        "the API's all-ports warning goes to stderr: {every:#?}"
    );
    srv.cli(&[
        "egress-rules",
        "add",
        "cli-rules",
        "--name",
        "db-net",
        "--type",
        "CIDR",
        "--destination",
        "10.0.0.0/8",
        "--port",
        "5432",
    ])
    .ok();

    // Table: header, one aligned row per rule, sorted by name.
    let table = srv.cli(&["egress-rules", "list", "cli-rules"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header = lines[0];
    for column in ["NAME", "TYPE", "DESTINATION", "PORTS", "STATE", "ID"] {
        assert!(header.contains(column), "{header}");
    }
    assert_eq!(cell(header, lines[1], "NAME"), "db-net");
    assert_eq!(cell(header, lines[1], "TYPE"), "CIDR");
    assert_eq!(cell(header, lines[2], "PORTS"), "all");
    assert_eq!(cell(header, lines[3], "PORTS"), "443,80");
    assert_eq!(cell(header, lines[3], "ID"), web_id);

    // JSON, one rule per page: the CLI follows pagination to the end.
    let all = srv
        .cli(&[
            "egress-rules",
            "list",
            "cli-rules",
            "--output",
            "json",
            "--page-size",
            "1",
        ])
        .ok()
        .json();
    assert_eq!(names(&all), ["db-net", "every-port", "web"]);

    // Edit by name keeps what is not given.
    let edited = srv
        .cli(&[
            "egress-rules",
            "edit",
            "cli-rules",
            "web",
            "--port",
            "8443",
            "--description",
            "partner API",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(edited["Rule"]["ports"], serde_json::json!([8443]));
    let got = srv
        .cli(&[
            "egress-rules",
            "get",
            "cli-rules",
            &web_id,
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(got["rule"]["ports"], serde_json::json!([8443]));
    assert_eq!(got["rule"]["paths"], serde_json::json!(["/v1/*"]));
    assert_eq!(got["rule"]["description"], "partner API");
    srv.cli(&["egress-rules", "edit", "cli-rules", "web"])
        .failed(2);

    let deleted = srv
        .cli(&[
            "egress-rules",
            "delete",
            "cli-rules",
            "db-net",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(deleted["Rule"]["name"], "db-net");
    assert_eq!(deleted["Rule"]["state"], "PENDING_DELETION");
    let missing = srv
        .cli(&["egress-rules", "delete", "cli-rules", "no-such-rule"])
        .failed(1);
    assert!(
        missing.stderr.contains("no egress rule named"),
        "{missing:#?}"
    );

    // A validation error: exit 1, the API's message and the field it names.
    let invalid = srv
        .cli(&[
            "egress-rules",
            "add",
            "cli-rules",
            "--name",
            "too-wide",
            "--type",
            "FQDN",
            "--destination",
            "*.com",
            "--port",
            "443",
        ])
        .failed(1);
    assert!(invalid.stderr.starts_with("error: "), "{invalid:#?}");
    assert!(
        invalid.stderr.contains("field: destination"),
        "{invalid:#?}"
    );

    // Exactly one policy flag.
    srv.cli(&["egress-policy", "set", "cli-rules"]).failed(2);
    srv.cli(&[
        "egress-policy",
        "set",
        "cli-rules",
        "--allow-all",
        "--report-only",
    ])
    .failed(2);
    srv.cli(&["egress-policy", "set", "cli-rules", "--default-deny"])
        .ok();
    // The policy reads UPDATING until every gateway of the cluster applied it.
    let policy = srv
        .cli(&["egress-policy", "get", "cli-rules", "--output", "json"])
        .ok()
        .json();
    let policy = policy["egress_traffic_policy"].as_str().expect("policy");
    assert!(
        ["UPDATING", "DEFAULT_DENY"].contains(&policy),
        "policy {policy}"
    );

    srv.cli(&["clusters", "delete", "cli-rules"]).ok();
    srv.cli(&["clusters", "get", "cli-rules"]).failed(1);
}

#[test]
fn allowlist_and_egress_endpoints() {
    let srv = Server::start();
    srv.cli(&[
        "clusters",
        "create",
        "cli-endpoints",
        "--provider",
        "AWS",
        "--region",
        "us-east-1=3",
        "--private",
    ])
    .ok();

    // Allowlist first: a PENDING endpoint locks the cluster.
    let office = srv
        .cli(&[
            "allowlist",
            "add",
            "cli-endpoints",
            "192.168.1.0/24",
            "--name",
            "office",
            "--sql",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(office["cidr_ip"], "192.168.1.0");
    assert_eq!(office["cidr_mask"], 24);
    assert_eq!(office["sql"], true);
    assert_eq!(office["ui"], false);
    srv.cli(&[
        "allowlist",
        "add",
        "cli-endpoints",
        "10.0.0.0/8",
        "--sql",
        "--ui",
    ])
    .ok();
    srv.cli(&["allowlist", "add", "cli-endpoints", "172.16.0.0/12"])
        .failed(2);
    let host_bits = srv
        .cli(&["allowlist", "add", "cli-endpoints", "10.1.2.3/8", "--sql"])
        .failed(1);
    assert!(
        host_bits.stderr.contains("field: cidr_ip"),
        "{host_bits:#?}"
    );
    let updated = srv
        .cli(&[
            "allowlist",
            "update",
            "cli-endpoints",
            "192.168.1.0/24",
            "--ui",
            "true",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(updated["sql"], true, "kept: {updated}");
    assert_eq!(updated["ui"], true);
    assert_eq!(updated["name"], "office");
    srv.cli(&["allowlist", "update", "cli-endpoints", "192.168.1.0/24"])
        .failed(2);
    srv.cli(&[
        "allowlist",
        "update",
        "cli-endpoints",
        "172.16.0.0/12",
        "--sql",
        "true",
    ])
    .failed(1);
    let table = srv.cli(&["allowlist", "list", "cli-endpoints"]).ok().stdout;
    assert!(table.starts_with("CIDR "), "{table}");
    assert!(table.contains("192.168.1.0/24") && table.contains("office"));
    srv.cli(&["allowlist", "delete", "cli-endpoints", "10.0.0.0/8"])
        .ok();
    let left = srv
        .cli(&["allowlist", "list", "cli-endpoints", "--output", "json"])
        .ok()
        .json();
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{left}");
    assert_eq!(left[0]["name"], "office");

    let ep = srv
        .cli(&[
            "egress-endpoints",
            "create",
            "cli-endpoints",
            "--region",
            "us-east-1",
            "--target",
            "com.amazonaws.vpce.us-east-1.vpce-svc-example",
            "--type",
            "PRIVATE_SERVICE",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let ep_id = ep["id"].as_str().expect("endpoint id").to_string();
    assert_eq!(ep["state"], "PENDING");
    assert_eq!(ep["target_service_type"], "PRIVATE_SERVICE");

    let listed = srv
        .cli(&[
            "egress-endpoints",
            "list",
            "cli-endpoints",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(listed[0]["id"], ep_id.as_str());
    let table = srv
        .cli(&["egress-endpoints", "list", "cli-endpoints"])
        .ok()
        .stdout;
    assert!(
        table.starts_with("ID ") && table.contains(&ep_id),
        "{table}"
    );
    let got = srv
        .cli(&[
            "egress-endpoints",
            "get",
            "cli-endpoints",
            &ep_id,
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        got["target_service_identifier"],
        "com.amazonaws.vpce.us-east-1.vpce-svc-example"
    );

    // No endpoint service of that name is registered, so the endpoint never becomes
    // AVAILABLE and the API refuses domain names: the CLI reports that refusal.
    let domains = srv
        .cli(&[
            "egress-endpoints",
            "set-domains",
            "cli-endpoints",
            &ep_id,
            "kafka.example.com",
        ])
        .failed(1);
    assert!(domains.stderr.starts_with("error: "), "{domains:#?}");

    srv.cli(&["egress-endpoints", "delete", "cli-endpoints", &ep_id])
        .ok();
    let after = srv
        .cli(&[
            "egress-endpoints",
            "list",
            "cli-endpoints",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let states: Vec<&str> = after
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert!(
        states.iter().all(|s| *s == "DELETING"),
        "deleted endpoint shows {states:?}"
    );
}

#[test]
fn errors_keys_and_exit_status() {
    let srv = Server::start();

    // The API's validation error names the field.
    let bad_name = srv
        .cli(&[
            "clusters",
            "create",
            "Not_A_Name",
            "--provider",
            "AWS",
            "--region",
            "us-east-1=3",
        ])
        .failed(1);
    assert!(bad_name.stderr.contains("field: name"), "{bad_name:#?}");
    let unknown = srv
        .cli(&["egress-rules", "list", "no-such-cluster"])
        .failed(1);
    assert!(
        unknown
            .stderr
            .contains("no cluster is named \"no-such-cluster\""),
        "{unknown:#?}"
    );

    // Nothing listens on a port just released: exit 2 naming the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let closed_url = format!("http://{closed}");
    let unreachable = srv
        .cli(&["clusters", "list", "--url", &closed_url])
        .failed(2);
    assert!(unreachable.stderr.contains(&closed_url), "{unreachable:#?}");
    srv.cli(&["clusters", "list", "--url", "https://127.0.0.1:1"])
        .failed(2);

    // A wrong key: 401, exit 1, and the key itself is never printed.
    let wrong_key = "cli-test-wrong-key-0123456789";
    let denied = srv.cli_with(&["clusters", "list"], |c| {
        c.env("PERIMETER_API_KEY", wrong_key);
    });
    let denied = denied.failed(1);
    assert!(
        !denied.stderr.contains(wrong_key) && !denied.stdout.contains(wrong_key),
        "{denied:#?}"
    );
    let help = srv.cli_with(&["clusters", "list", "--help"], |c| {
        c.env("PERIMETER_API_KEY", wrong_key);
    });
    let help = help.ok();
    assert!(!help.stdout.contains(wrong_key), "{}", help.stdout);
    assert!(help.stdout.contains("admin-api-key"), "{}", help.stdout);

    // Without a key, ./perimeter-data/admin-api-key is used (the CLI runs in the server's dir).
    srv.cli_with(&["clusters", "list"], |c| {
        c.env_remove("PERIMETER_API_KEY");
    })
    .ok();
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let no_key = srv.cli_with(&["clusters", "list"], |c| {
        c.env_remove("PERIMETER_API_KEY")
            .current_dir(elsewhere.path());
    });
    let no_key = no_key.failed(2);
    assert!(no_key.stderr.contains("PERIMETER_API_KEY"), "{no_key:#?}");
}

#[test]
fn check_and_gateways() {
    let srv = Server::start();
    srv.cli(&[
        "clusters",
        "create",
        "cli-check",
        "--provider",
        "AWS",
        "--region",
        "us-east-1=1",
    ])
    .ok();
    srv.cli(&[
        "egress-rules",
        "add",
        "cli-check",
        "--name",
        "api",
        "--type",
        "FQDN",
        "--destination",
        "api.example.com",
        "--port",
        "443",
    ])
    .ok();
    srv.cli(&["egress-policy", "set", "cli-check", "--default-deny"])
        .ok();
    let yes = srv
        .cli(&[
            "check",
            "cli-check",
            "API.example.com",
            "--port",
            "443",
            "--output",
            "json",
        ])
        .ok();
    assert_eq!(yes.json()["allowed"], true, "{yes:#?}");
    assert_eq!(yes.json()["rule"]["name"], "api");
    let no = srv
        .cli(&["check", "cli-check", "other.example.com", "--port", "443"])
        .ok();
    assert!(
        no.stdout.contains("false") && no.stdout.contains("no_rule_for_destination"),
        "{no:#?}"
    );
    let bad = srv
        .cli(&["check", "cli-check", "0177.0.0.1", "--port", "443"])
        .failed(1);
    assert!(bad.stderr.contains("destination"), "{bad:#?}");
    // A gateway's token, shown once on the last line; then the list.
    let created = srv
        .cli(&[
            "gateways",
            "create",
            "cli-check",
            "--region",
            "us-east-1",
            "--name",
            "edge-1",
        ])
        .ok();
    let token = created
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(token.starts_with("PRGW."), "{created:#?}");
    let list = srv
        .cli(&["gateways", "list", "cli-check", "--output", "json"])
        .ok();
    let gws = list.json();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Beside the region's embedded gateway, which `perimeter serve` runs itself.
    assert_eq!(names(&gws), ["edge-1", "embedded-us-east-1"], "{gws:#}");
    assert_eq!(gws[0]["live"], false, "not seen yet");
    let id = gws[0]["id"].as_str().unwrap().to_string();
    srv.cli(&["gateways", "delete", "cli-check", &id]).ok();
    let list = srv
        .cli(&["gateways", "list", "cli-check", "--output", "json"])
        .ok();
    assert_eq!(names(&list.json()), ["embedded-us-east-1"]);
    let wrong = srv
        .cli(&[
            "gateways",
            "create",
            "cli-check",
            "--region",
            "eu-west-1",
            "--name",
            "x",
        ])
        .failed(1);
    assert!(wrong.stderr.contains("region"), "{wrong:#?}");
}

#[test]
fn check_judges_names_by_the_addresses_the_gateways_resolve() {
    let srv = Server::start();
    srv.cli(&[
        "clusters",
        "create",
        "cli-what-if",
        "--provider",
        "AWS",
        "--region",
        "us-east-1=1",
    ])
    .ok();
    for (name, kind, destination) in [
        ("docs-net", "CIDR", "203.0.113.0/24"),
        ("loop", "FQDN", "loop.test.example"),
    ] {
        srv.cli(&[
            "egress-rules",
            "add",
            "cli-what-if",
            "--name",
            name,
            "--type",
            kind,
            "--destination",
            destination,
            "--port",
            "443",
        ])
        .ok();
    }
    srv.cli(&["egress-policy", "set", "cli-what-if", "--default-deny"])
        .ok();
    let cluster = srv
        .cli(&["clusters", "get", "cli-what-if", "--output", "json"])
        .ok()
        .json();
    let id = cluster["id"].as_str().expect("cluster id").to_string();
    let ask = |destination: &str| {
        let (st, body) = perimeter_testkit::api(
            &srv.serve,
            &srv.key,
            "POST",
            &format!("/api/v1/clusters/{id}/networking/egress-check"),
            Some(serde_json::json!({"destination": destination, "port": 443})),
        );
        assert_eq!(st, 200, "{destination}: {body}");
        perimeter_testkit::json(&body)
    };
    let cli_json = |destination: &str| {
        srv.cli(&[
            "check",
            "cli-what-if",
            destination,
            "--port",
            "443",
            "--output",
            "json",
        ])
        .ok()
        .json()
    };
    let cli_table = |destination: &str| {
        srv.cli(&["check", "cli-what-if", destination, "--port", "443"])
            .ok()
            .stdout
    };

    // The hosts file maps the name into the CIDR rule: the gateways allow it, and so does the
    // what-if, naming the CIDR rule and the address it dials.
    let v = ask("cidr.test.example");
    assert_eq!(v["allowed"], true, "{v:#}");
    assert_eq!(v["reason"], "allowed_by_rule", "{v:#}");
    assert_eq!(v["rule"]["name"], "docs-net", "{v:#}");
    assert_eq!(
        v["addresses"],
        serde_json::json!([{"address": "203.0.113.10", "allowed": true, "rule_name": "docs-net",
                            "reason": "allowed_by_rule", "dialled": true}]),
        "{v:#}"
    );
    assert_eq!(v["resolution_error"], Value::Null, "{v:#}");
    let c = cli_json("cidr.test.example");
    assert_eq!(
        (&c["allowed"], &c["rule"]["name"], &c["addresses"]),
        (&v["allowed"], &v["rule"]["name"], &v["addresses"])
    );
    let table = cli_table("cidr.test.example");
    let row = table
        .lines()
        .find(|l| l.starts_with("203.0.113.10"))
        .unwrap_or_else(|| panic!("no address row: {table}"));
    assert!(
        row.contains("true") && row.contains("docs-net") && row.contains("yes"),
        "{table}"
    );
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with("true")
            && l.contains("docs-net")
            && l.contains("allowed_by_rule")),
        "{table}"
    );

    // An FQDN rule names it, but it resolves to loopback: the address guard refuses.
    let v = ask("loop.test.example");
    assert_eq!(v["allowed"], false, "{v:#}");
    assert_eq!(v["reason"], "special_address", "{v:#}");
    assert_eq!(v["rule"], Value::Null, "{v:#}");
    assert_eq!(v["addresses"][0]["address"], "127.0.0.1", "{v:#}");
    assert_eq!(v["addresses"][0]["reason"], "special_address", "{v:#}");
    assert_eq!(v["addresses"][0]["dialled"], false, "{v:#}");
    let c = cli_json("loop.test.example");
    assert_eq!(
        (&c["allowed"], &c["reason"], &c["addresses"]),
        (&v["allowed"], &v["reason"], &v["addresses"])
    );
    let table = cli_table("loop.test.example");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("127.0.0.1") && l.contains("special_address")),
        "{table}"
    );

    // A name that does not resolve: said in the answer, not an HTTP error.
    let v = ask("missing.test.example");
    assert_eq!(v["allowed"], false, "{v:#}");
    assert_eq!(v["reason"], "no_rule_for_destination", "{v:#}");
    assert_eq!(v["addresses"], Value::Null, "{v:#}");
    assert_eq!(v["resolution_error"]["reason"], "dns_nxdomain", "{v:#}");
    assert!(
        v["resolution_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing.test.example")),
        "{v:#}"
    );
    assert!(
        v["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains("cannot resolve"))),
        "{v:#}"
    );
    let out = srv
        .cli(&[
            "check",
            "cli-what-if",
            "missing.test.example",
            "--port",
            "443",
        ])
        .ok();
    assert!(
        out.stdout.contains("unresolved:") && out.stdout.contains("dns_nxdomain"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("cannot resolve"), "{out:#?}");
}

#[test]
fn endpoint_services_and_a_private_endpoint_end_to_end() {
    let srv = Server::start();
    let cluster = srv
        .cli(&[
            "clusters",
            "create",
            "cli-private",
            "--provider",
            "AWS",
            "--region",
            "us-east-1=1",
            "--restrict-egress",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        cluster["egress_traffic_policy"], "DEFAULT_DENY",
        "{cluster:#}"
    );
    let account = cluster["account_id"]
        .as_str()
        .expect("account id")
        .to_string();
    let proxy = format!(
        "http://{}",
        cluster["regions"][0]["egress_proxy_address"]
            .as_str()
            .expect("egress proxy address")
    );
    let port = perimeter_testkit::upstream::http_upstream();
    let backend = format!("127.0.0.1:{port}");
    let plain = "com.amazonaws.vpce.us-east-1.vpce-svc-cliplain";
    let kafka = "com.amazonaws.vpce.us-east-1.vpce-svc-clikafka";

    // What the command line refuses before any request, and what the API refuses.
    let refused = srv
        .cli(&[
            "endpoint-services",
            "create",
            "--name",
            plain,
            "--region",
            "us-east-1",
            "--allow-special-addresses",
            "--backend",
            &backend,
            "--auto-accept",
            &account,
        ])
        .failed(2);
    assert!(
        refused.stderr.contains("--acceptance-required"),
        "{refused:#?}"
    );
    let no_names = srv
        .cli(&[
            "endpoint-services",
            "create",
            "--name",
            plain,
            "--region",
            "us-east-1",
            "--allow-special-addresses",
            "--backend",
            "127.0.0.1:9093=",
        ])
        .failed(2);
    assert!(no_names.stderr.contains("server names"), "{no_names:#?}");
    let bad_port = srv
        .cli(&[
            "endpoint-services",
            "create",
            "--name",
            plain,
            "--region",
            "us-east-1",
            "--allow-special-addresses",
            "--backend",
            &backend,
            "--backend",
            "127.0.0.1:70000=b-1.kafka.example",
        ])
        .failed(1);
    assert!(
        bad_port.stderr.starts_with("error: ")
            && bad_port.stderr.contains("field: backends[1].address"),
        "{bad_port:#?}"
    );

    // A loopback backend is a special address: refused without the operator's explicit flag.
    let special = srv
        .cli(&[
            "endpoint-services",
            "create",
            "--name",
            plain,
            "--region",
            "us-east-1",
            "--backend",
            &backend,
        ])
        .failed(1);
    assert!(
        special.stderr.contains("field: backends[0]")
            && special.stderr.contains("allow_special_addresses"),
        "{special:#?}"
    );

    // A plain service whose owner accepts each connection (another account is auto-accepted).
    let svc = srv
        .cli(&[
            "endpoint-services",
            "create",
            "--name",
            plain,
            "--region",
            "us-east-1",
            "--allow-special-addresses",
            "--backend",
            &backend,
            "--acceptance-required",
            "--auto-accept",
            "000000000000",
            "--acceptance-timeout-seconds",
            "3600",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let plain_id = svc["id"].as_str().expect("service id").to_string();
    assert_eq!(svc["backends"], serde_json::json!([backend]), "{svc:#}");
    assert_eq!(svc["acceptance_required"], true, "{svc:#}");
    assert_eq!(
        svc["auto_accept_accounts"],
        serde_json::json!(["000000000000"])
    );
    assert_eq!(svc["acceptance_timeout_seconds"], 3600, "{svc:#}");
    assert_eq!(svc["proxy_protocol"], false, "{svc:#}");
    // Brokers routed by SNI, in the API's object shape; the table spells them as the flag does.
    let svc = srv
        .cli(&[
            "endpoint-services",
            "create",
            "--name",
            kafka,
            "--region",
            "us-east-1",
            "--allow-special-addresses",
            "--backend",
            "127.0.0.1:19093=b-1.kafka.example,*.b-1.kafka.example",
            "--backend",
            "127.0.0.1:19094=b-2.kafka.example",
            "--proxy-protocol",
            "--acceptance-required",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        svc["backends"],
        serde_json::json!([
            {"address": "127.0.0.1:19093", "server_names": ["b-1.kafka.example", "*.b-1.kafka.example"]},
            {"address": "127.0.0.1:19094", "server_names": ["b-2.kafka.example"]},
        ]),
        "{svc:#}"
    );
    assert_eq!(svc["proxy_protocol"], true, "{svc:#}");
    let table = srv.cli(&["endpoint-services", "get", kafka]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert_eq!(cell(lines[0], lines[1], "ACCEPTANCE"), "required");
    assert_eq!(cell(lines[0], lines[1], "PROXY_PROTOCOL"), "true");
    assert!(
        lines[1].ends_with(
            "127.0.0.1:19093=b-1.kafka.example,*.b-1.kafka.example 127.0.0.1:19094=b-2.kafka.example"
        ),
        "{table}"
    );
    let listed = srv
        .cli(&[
            "endpoint-services",
            "list",
            "--output",
            "json",
            "--page-size",
            "1",
        ])
        .ok()
        .json();
    let mut listed: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["service_name"].as_str().expect("service_name"))
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, [kafka, plain]);
    let by_id = srv
        .cli(&["endpoint-services", "get", &plain_id, "--output", "json"])
        .ok()
        .json();
    assert_eq!(by_id["service_name"], plain);
    let unknown = srv
        .cli(&["endpoint-services", "get", "no-such-service"])
        .failed(1);
    assert!(
        unknown
            .stderr
            .contains("no endpoint service is named \"no-such-service\""),
        "{unknown:#?}"
    );

    let endpoint = |target: &str| {
        srv.cli(&[
            "egress-endpoints",
            "create",
            "cli-private",
            "--region",
            "us-east-1",
            "--target",
            target,
            "--type",
            "PRIVATE_SERVICE",
            "--output",
            "json",
        ])
        .ok()
        .json()["id"]
            .as_str()
            .expect("endpoint id")
            .to_string()
    };
    let get = |id: &str| {
        srv.cli(&[
            "egress-endpoints",
            "get",
            "cli-private",
            id,
            "--output",
            "json",
        ])
        .ok()
        .json()
    };
    let wait = |id: &str, field: &str, want: &str| {
        let mut last = Value::Null;
        perimeter_testkit::wait_until(&format!("endpoint {id} {field} {want}"), 30, || {
            last = get(id);
            last[field] == want
        });
        last
    };
    let connection = |service: &str, endpoint: &str| {
        let all = srv
            .cli(&[
                "endpoint-services",
                "connections",
                service,
                "--output",
                "json",
            ])
            .ok()
            .json();
        all.as_array()
            .expect("array")
            .iter()
            .find(|c| c["egress_private_endpoint_id"] == endpoint)
            .unwrap_or_else(|| panic!("no connection of {endpoint}: {all:#}"))
            .clone()
    };

    // The kafka service's owner rejects; the plain one's accepts.
    let kafka_ep = endpoint(kafka);
    wait(&kafka_ep, "state", "PENDING_ACCEPTANCE");
    let plain_ep = endpoint(plain);
    wait(&plain_ep, "state", "PENDING_ACCEPTANCE");
    let waiting = connection(plain, &plain_ep);
    assert_eq!(waiting["status"], "PENDING_ACCEPTANCE", "{waiting:#}");
    assert_eq!(waiting["account_id"], account.as_str(), "{waiting:#}");
    let table = srv
        .cli(&["endpoint-services", "connections", plain])
        .ok()
        .stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert_eq!(cell(lines[0], lines[1], "STATUS"), "PENDING_ACCEPTANCE");
    assert_eq!(cell(lines[0], lines[1], "ENDPOINT"), plain_ep);

    let kafka_conn = connection(kafka, &kafka_ep)["id"]
        .as_str()
        .expect("connection id")
        .to_string();
    let rejected = srv
        .cli(&[
            "endpoint-services",
            "reject",
            kafka,
            &kafka_conn,
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(rejected["status"], "REJECTED", "{rejected:#}");
    wait(&kafka_ep, "state", "REJECTED");
    let again = srv
        .cli(&["endpoint-services", "accept", kafka, &kafka_conn])
        .failed(1);
    assert!(again.stderr.contains("field: connection_id"), "{again:#?}");

    let plain_conn = waiting["id"].as_str().expect("connection id").to_string();
    let accepted = srv
        .cli(&["endpoint-services", "accept", plain, &plain_conn])
        .ok()
        .stdout;
    assert!(accepted.contains("AVAILABLE"), "{accepted}");
    let ep = wait(&plain_ep, "state", "AVAILABLE");
    let address = ep["endpoint_address"]
        .as_str()
        .expect("address")
        .to_string();

    // Under DEFAULT_DENY with no egress rule, the endpoint reaches the service through the
    // region's egress proxy, by its address and then by its custom domain.
    let through = |host: &str| {
        perimeter_testkit::curl(&[
            "--proxy",
            &proxy,
            "--proxytunnel",
            &format!("http://{host}:{port}/through-endpoint"),
        ])
    };
    assert_eq!(
        through(&address),
        (200, "upstream-ok /through-endpoint\n".into())
    );
    assert_eq!(
        through("svc.cli.example").0,
        0,
        "CONNECT refused: no rule, no endpoint"
    );
    srv.cli(&[
        "egress-endpoints",
        "set-domains",
        "cli-private",
        &plain_ep,
        "svc.cli.example",
    ])
    .ok();
    wait(&plain_ep, "domain_names_state", "AVAILABLE");
    assert_eq!(
        through("svc.cli.example"),
        (200, "upstream-ok /through-endpoint\n".into())
    );

    // The bytes relayed, as the gateway pushes them (every 5 s); the table shows the figure
    // the JSON has before and after it.
    let bytes_of = |id: &str| {
        get(id)["bytes_processed"]
            .as_i64()
            .expect("bytes_processed")
    };
    let table_bytes = || {
        let table = srv
            .cli(&["egress-endpoints", "list", "cli-private"])
            .ok()
            .stdout;
        let header = table.lines().next().expect("header").to_string();
        let row = table
            .lines()
            .find(|l| l.starts_with(&plain_ep))
            .unwrap_or_else(|| panic!("no row of {plain_ep}: {table}"))
            .to_string();
        assert_eq!(cell(&header, &row, "STATE"), "AVAILABLE", "{table}");
        assert_eq!(cell(&header, &row, "DOMAINS"), "svc.cli.example", "{table}");
        cell(&header, &row, "BYTES").to_string()
    };
    perimeter_testkit::wait_until("bytes_processed in the JSON and the table", 30, || {
        let before = bytes_of(&plain_ep);
        let shown = table_bytes();
        before > 0 && shown == before.to_string() && bytes_of(&plain_ep) == before
    });

    // A service with a connected endpoint cannot go; once the endpoint is gone it can.
    let busy = srv.cli(&["endpoint-services", "delete", plain]).failed(1);
    assert!(
        busy.stderr.contains(&plain_ep) && busy.stderr.contains("field: id"),
        "{busy:#?}"
    );
    srv.cli(&["egress-endpoints", "delete", "cli-private", &plain_ep])
        .ok();
    perimeter_testkit::wait_until("the endpoint to be gone", 30, || {
        srv.cli(&["egress-endpoints", "get", "cli-private", &plain_ep])
            .code
            == 1
    });
    assert_eq!(
        through(&address).0,
        0,
        "deleted endpoint still reaches the service"
    );
    let gone = srv.cli(&["endpoint-services", "delete", plain]).ok().stdout;
    assert!(gone.contains(plain), "{gone}");
    srv.cli(&["endpoint-services", "get", plain]).failed(1);
}

#[test]
fn workload_show_and_set() {
    let srv = Server::start();
    srv.cli(&[
        "clusters",
        "create",
        "cli-workload",
        "--provider",
        "AWS",
        "--region",
        "us-east-1=1",
        "--region",
        "eu-west-1=1",
    ])
    .ok();
    let set = srv
        .cli(&[
            "workload",
            "set",
            "cli-workload",
            "us-east-1",
            "--sql",
            "127.0.0.1:26257",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(set["regions"]["us-east-1"]["sql"], "127.0.0.1:26257");
    assert_eq!(set["regions"]["us-east-1"]["ui"], "");
    // One region at a time: the others keep theirs.
    srv.cli(&[
        "workload",
        "set",
        "cli-workload",
        "eu-west-1",
        "--ui",
        "db.internal.example:8080",
    ])
    .ok();
    let table = srv.cli(&["workload", "show", "cli-workload"]).ok().stdout;
    assert!(table.starts_with("REGION "), "{table}");
    assert!(
        table.contains("127.0.0.1:26257") && table.contains("db.internal.example:8080"),
        "{table}"
    );
    let bad = srv
        .cli(&[
            "workload",
            "set",
            "cli-workload",
            "us-east-1",
            "--ui",
            "127.0.0.1",
        ])
        .failed(1);
    assert!(
        bad.stderr.contains("field: regions.us-east-1.ui"),
        "{bad:#?}"
    );
    srv.cli(&["workload", "set", "cli-workload", "us-east-1"])
        .failed(2);
    let shown = srv
        .cli(&["workload", "show", "cli-workload", "--output", "json"])
        .ok()
        .json();
    assert_eq!(shown["regions"]["us-east-1"]["sql"], "127.0.0.1:26257");
    assert_eq!(shown["regions"]["us-east-1"]["ui"], "");
    assert_eq!(
        shown["regions"]["eu-west-1"]["ui"],
        "db.internal.example:8080"
    );
}

#[test]
fn clusters_credential_roles() {
    let srv = Server::start();
    let created = srv
        .cli(&[
            "clusters",
            "create",
            "cli-roles",
            "--provider",
            "AWS",
            "--region",
            "us-east-1=1",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let id = created["id"].as_str().expect("id").to_string();
    let account = created["account_id"].as_str().expect("account").to_string();
    assert_eq!(created["credential_roles"], serde_json::json!({}));
    let none = srv
        .cli(&["clusters", "credential-roles", "cli-roles"])
        .ok()
        .stdout;
    assert_eq!(none.lines().count(), 1, "a header only: {none}");
    let set = srv
        .cli(&[
            "clusters",
            "credential-roles",
            "cli-roles",
            "--set",
            "backup=arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}",
            "--set",
            "changefeed=arn:aws:iam::{account_id}:role/crl-cdc-sink-user-{cluster_id}",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let backup = format!("arn:aws:iam::123456789012:role/crl-dr-store-user-{id}");
    let cdc = format!("arn:aws:iam::{account}:role/crl-cdc-sink-user-{id}");
    assert_eq!(set["roles"]["backup"]["role_arn"], backup.as_str(), "{set}");
    assert_eq!(
        set["roles"]["changefeed"]["role_arn"],
        cdc.as_str(),
        "{set}"
    );
    // The table shows each purpose with its expanded ARN; `clusters get` shows them too.
    let table = srv
        .cli(&["clusters", "credential-roles", "cli-roles"])
        .ok()
        .stdout;
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("PURPOSE "), "{table}");
    let row = lines.next().expect("backup row");
    assert_eq!(cell(header, row, "PURPOSE"), "backup");
    assert_eq!(cell(header, row, "ROLE_ARN"), backup);
    let detail = srv.cli(&["clusters", "get", "cli-roles"]).ok().stdout;
    assert!(
        detail.contains("CREDENTIAL_ROLE") && detail.contains(&cdc),
        "{detail}"
    );
    // --unset removes one purpose; the others keep theirs.
    let v = srv
        .cli(&[
            "clusters",
            "credential-roles",
            "cli-roles",
            "--unset",
            "backup",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let purposes: Vec<&String> = v["roles"].as_object().expect("roles").keys().collect();
    assert_eq!(purposes, ["changefeed"], "{v}");
    // A refused template names the purpose, and changes nothing.
    let bad = srv
        .cli(&[
            "clusters",
            "credential-roles",
            "cli-roles",
            "--set",
            "backup=arn:aws:iam::123456789012:role/x-{cluster}",
        ])
        .failed(1);
    assert!(bad.stderr.contains("field: roles.backup"), "{bad:#?}");
    assert!(bad.stderr.contains("{cluster}"), "{bad:#?}");
    srv.cli(&[
        "clusters",
        "credential-roles",
        "cli-roles",
        "--set",
        "backup",
    ])
    .failed(2);
    // --clear empties the set.
    let v = srv
        .cli(&[
            "clusters",
            "credential-roles",
            "cli-roles",
            "--clear",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(v, serde_json::json!({"roles": {}}));
    let shown = srv
        .cli(&["clusters", "get", "cli-roles", "--output", "json"])
        .ok()
        .json();
    assert_eq!(shown["credential_roles"], serde_json::json!({}));
}

#[test]
fn clusters_tls_inspection() {
    let srv = Server::start();
    srv.cli(&[
        "clusters",
        "create",
        "cli-inspect",
        "--provider",
        "AWS",
        "--region",
        "us-east-1=1",
    ])
    .ok();
    let off = srv
        .cli(&[
            "clusters",
            "tls-inspection",
            "cli-inspect",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(off["enabled"], false, "{off}");
    assert_eq!(off["ca_certificate"], "", "{off}");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    let ca_arg = ca.to_str().expect("utf-8 path");
    // No CA to write before the first enable.
    srv.cli(&[
        "clusters",
        "tls-inspection",
        "cli-inspect",
        "--ca-out",
        ca_arg,
    ])
    .failed(2);
    let on = srv
        .cli(&[
            "clusters",
            "tls-inspection",
            "cli-inspect",
            "--enable",
            "--never-inspect",
            "pinned.example.com",
            "--never-inspect",
            "*.bank.example",
            "--ca-out",
            ca_arg,
        ])
        .ok()
        .stdout;
    let fingerprint = on
        .lines()
        .find_map(|l| l.strip_prefix("ca_fingerprint_sha256"))
        .expect("a fingerprint row")
        .trim()
        .to_string();
    assert_eq!(fingerprint.len(), 95, "{on}");
    assert!(
        on.lines()
            .any(|l| l.starts_with("enabled") && l.trim_end().ends_with("true")),
        "{on}"
    );
    assert!(on.contains("pinned.example.com,*.bank.example"), "{on}");
    let pem = std::fs::read_to_string(&ca).expect("--ca-out wrote the CA");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    // --disable keeps the CA and the list; a bad pattern names its index.
    let v = srv
        .cli(&[
            "clusters",
            "tls-inspection",
            "cli-inspect",
            "--disable",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(v["enabled"], false);
    assert_eq!(v["ca_fingerprint_sha256"], fingerprint.as_str());
    assert_eq!(v["ca_certificate"], pem.as_str());
    assert_eq!(
        v["never_inspect"],
        serde_json::json!(["pinned.example.com", "*.bank.example"])
    );
    let bad = srv
        .cli(&[
            "clusters",
            "tls-inspection",
            "cli-inspect",
            "--never-inspect",
            "ok.example.com",
            "--never-inspect",
            "not a host",
        ])
        .failed(1);
    assert!(bad.stderr.contains("never_inspect[1]"), "{bad:#?}");
    srv.cli(&[
        "clusters",
        "tls-inspection",
        "cli-inspect",
        "--enable",
        "--disable",
    ])
    .failed(2);
}

#[test]
fn check_ingress() {
    let srv = Server::start();
    srv.cli(&[
        "clusters",
        "create",
        "cli-ingress",
        "--provider",
        "AWS",
        "--region",
        "us-east-1=1",
    ])
    .ok();
    srv.cli(&[
        "allowlist",
        "add",
        "cli-ingress",
        "198.51.100.0/24",
        "--name",
        "office",
        "--sql",
    ])
    .ok();
    let table = srv
        .cli(&["check", "cli-ingress", "198.51.100.7", "--ingress", "--sql"])
        .ok()
        .stdout;
    assert!(table.starts_with("SOURCE "), "{table}");
    assert!(
        table.contains("true") && table.contains("198.51.100.0/24 (office)"),
        "{table}"
    );
    let v = srv
        .cli(&[
            "check",
            "cli-ingress",
            "198.51.100.7",
            "--ingress",
            "--ui",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(v["admitted"], false);
    assert_eq!(v["reason"], "listener_not_allowed");
    srv.cli(&["check", "cli-ingress", "198.51.100.7", "--ingress"])
        .failed(2);
    srv.cli(&["check", "cli-ingress", "198.51.100.7", "--sql"])
        .failed(2);
    let bad = srv
        .cli(&[
            "check",
            "cli-ingress",
            "0306.51.100.7",
            "--ingress",
            "--sql",
        ])
        .failed(1);
    assert!(bad.stderr.contains("field: source"), "{bad:#?}");
    // The private listener judges an endpoint id; the cluster has no connection yet.
    let v = srv
        .cli(&[
            "check",
            "cli-ingress",
            "vpce-0a1b2c3d4e5f67890",
            "--ingress",
            "--private",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(v["admitted"], false, "{v}");
    assert_eq!(v["reason"], "unknown_endpoint", "{v}");
    assert_eq!(v["endpoint_id"], "vpce-0a1b2c3d4e5f67890", "{v}");
    srv.cli(&[
        "check",
        "cli-ingress",
        "vpce-0a1b2c3d4e5f67890",
        "--ingress",
        "--private",
        "--sql",
    ])
    .failed(2);
}

#[test]
fn private_endpoints_services_connections_and_trusted_owners() {
    let srv = Server::start();
    srv.cli(&[
        "clusters",
        "create",
        "cli-ingress-pe",
        "--provider",
        "AWS",
        "--region",
        "us-east-1=1",
    ])
    .ok();
    let services = srv
        .cli(&[
            "private-endpoints",
            "services",
            "create",
            "cli-ingress-pe",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(services[0]["region_name"], "us-east-1", "{services}");
    let table = srv
        .cli(&["private-endpoints", "services", "list", "cli-ingress-pe"])
        .ok()
        .stdout;
    assert!(
        table.starts_with("REGION ") && table.contains("us-east-1"),
        "{table}"
    );
    // Trusted owners: add, list, get, remove.
    let added = srv
        .cli(&[
            "private-endpoints",
            "trusted-owners",
            "add",
            "cli-ingress-pe",
            "123456789012",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let owner = added["trusted_owner"]["id"].as_str().unwrap().to_string();
    let table = srv
        .cli(&[
            "private-endpoints",
            "trusted-owners",
            "list",
            "cli-ingress-pe",
        ])
        .ok()
        .stdout;
    assert!(table.contains("123456789012"), "{table}");
    srv.cli(&[
        "private-endpoints",
        "trusted-owners",
        "get",
        "cli-ingress-pe",
        &owner,
    ])
    .ok();
    let bad = srv
        .cli(&[
            "private-endpoints",
            "trusted-owners",
            "add",
            "cli-ingress-pe",
            "12345",
        ])
        .failed(1);
    assert!(bad.stderr.contains("external_owner_id"), "{bad:#?}");
    // Connections: register an endpoint id, see it, remove it.
    srv.cli(&[
        "private-endpoints",
        "connections",
        "add",
        "cli-ingress-pe",
        "vpce-0a1b2c3d4e5f67890",
    ])
    .ok();
    let listed = srv
        .cli(&[
            "private-endpoints",
            "connections",
            "list",
            "cli-ingress-pe",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        listed[0]["endpoint_id"], "vpce-0a1b2c3d4e5f67890",
        "{listed}"
    );
    srv.cli(&[
        "private-endpoints",
        "connections",
        "remove",
        "cli-ingress-pe",
        "vpce-0a1b2c3d4e5f67890",
    ])
    .ok();
    srv.cli(&[
        "private-endpoints",
        "trusted-owners",
        "remove",
        "cli-ingress-pe",
        &owner,
    ])
    .ok();
    let left = srv
        .cli(&[
            "private-endpoints",
            "trusted-owners",
            "list",
            "cli-ingress-pe",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(left, serde_json::json!([]));
}
