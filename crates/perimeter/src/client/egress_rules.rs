//! `perimeter egress-rules add|list|get|edit|delete`.

use clap::{Args, Subcommand, ValueEnum};
use perimeter_api::model::EgressRule;
use serde_json::{Value, json};

use super::api::{Failure, member, rules_path, view};
use super::output::{Table, emit, emit_list, joined};
use super::{Connection, Paging, print_warnings};

#[derive(Debug, Args)]
pub struct EgressRulesArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: RulesCmd,
}

#[derive(Debug, Subcommand)]
enum RulesCmd {
    /// Add a rule. Give the ports it allows with --port; a rule without ports allows every
    /// port, so that needs --all-ports spelled out.
    Add(AddArgs),
    /// List a cluster's rules (sorted by name).
    List {
        /// Cluster id or name.
        cluster: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one rule.
    Get {
        /// Cluster id or name.
        cluster: String,
        /// Rule id or name.
        rule: String,
    },
    /// Change a rule's destination, type, ports, paths or description (not its name).
    Edit(EditArgs),
    /// Delete a rule (it reads PENDING_DELETION until the gateways drop it).
    Delete {
        /// Cluster id or name.
        cluster: String,
        /// Rule id or name.
        rule: String,
    },
}

#[derive(Debug, Args)]
struct AddArgs {
    /// Cluster id or name.
    cluster: String,
    /// Rule name, unique in the cluster (it cannot change later).
    #[arg(long)]
    name: String,
    /// FQDN (a host name or *.domain) or CIDR (an IP prefix).
    #[arg(long = "type", value_enum, ignore_case = true)]
    rule_type: RuleType,
    /// A host name (`example.com`, `*.example.com`) for FQDN, a prefix (`10.0.0.0/8`) for CIDR.
    #[arg(long)]
    destination: String,
    #[command(flatten)]
    ports: PortArgs,
    /// HTTP path the rule allows, exact (`/v1/x`) or prefix (`/v1/*`); repeatable. None: any path.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Free text kept with the rule.
    #[arg(long, default_value = "")]
    description: String,
    /// Operator-managed rule that customer roles cannot edit or delete (needs PLATFORM_OPERATOR).
    #[arg(long)]
    crl_managed: bool,
}

#[derive(Debug, Args)]
struct EditArgs {
    /// Cluster id or name.
    cluster: String,
    /// Rule id or name.
    rule: String,
    /// New destination.
    #[arg(long)]
    destination: Option<String>,
    /// New type (FQDN or CIDR); a change to CIDR drops the paths.
    #[arg(long = "type", value_enum, ignore_case = true)]
    rule_type: Option<RuleType>,
    #[command(flatten)]
    ports: PortArgs,
    /// New paths, replacing the current ones; repeatable.
    #[arg(long = "path", value_name = "PATH", conflicts_with = "all_paths")]
    paths: Vec<String>,
    /// Remove the rule's paths, allowing any path.
    #[arg(long)]
    all_paths: bool,
    /// New description.
    #[arg(long)]
    description: Option<String>,
}

impl AddArgs {
    /// The POST body, refusing a rule without ports unless --all-ports says so.
    fn body(&self) -> Result<Value, Failure> {
        let mut body = json!({
            "name": self.name,
            "type": self.rule_type.as_str(),
            "destination": self.destination,
            "description": self.description,
        });
        match (self.ports.ports.is_empty(), self.ports.all_ports) {
            // --all-ports sends no `ports`: the API's spelling of every port.
            (_, true) => {}
            (false, false) => body["ports"] = json!(self.ports.ports),
            (true, false) => {
                return Err(Failure::Usage(
                    "no --port given: a rule without ports allows ALL ports. Pass --port N \
                     (repeatable, e.g. --port 443) or --all-ports to allow every port explicitly"
                        .into(),
                ));
            }
        }
        if !self.paths.is_empty() {
            body["paths"] = json!(self.paths);
        }
        if self.crl_managed {
            body["crl_managed"] = json!(true);
        }
        Ok(body)
    }
}

impl EditArgs {
    /// The PATCH body: only what was asked to change (absent keys keep their values).
    fn body(&self) -> Result<Value, Failure> {
        let mut body = json!({});
        if let Some(d) = &self.destination {
            body["destination"] = json!(d);
        }
        if let Some(t) = self.rule_type {
            body["type"] = json!(t.as_str());
        }
        if self.ports.all_ports {
            body["ports"] = json!([]);
        } else if !self.ports.ports.is_empty() {
            body["ports"] = json!(self.ports.ports);
        }
        if self.all_paths {
            body["paths"] = json!([]);
        } else if !self.paths.is_empty() {
            body["paths"] = json!(self.paths);
        }
        if let Some(d) = &self.description {
            body["description"] = json!(d);
        }
        if body.as_object().is_some_and(|o| o.is_empty()) {
            return Err(Failure::Usage(
                "nothing to change: pass --destination, --type, --port, --all-ports, --path, \
                 --all-paths or --description"
                    .into(),
            ));
        }
        Ok(body)
    }
}

#[derive(Debug, Args)]
struct PortArgs {
    /// A port the rule allows (1-65535); repeat or separate with commas: --port 443,80.
    #[arg(
        long = "port",
        value_name = "PORT",
        value_delimiter = ',',
        conflicts_with = "all_ports",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    ports: Vec<u16>,
    /// Allow every port (the API's meaning of a rule without ports).
    #[arg(long)]
    all_ports: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
enum RuleType {
    Fqdn,
    Cidr,
}

impl RuleType {
    fn as_str(self) -> &'static str {
        match self {
            RuleType::Fqdn => "FQDN",
            RuleType::Cidr => "CIDR",
        }
    }
}

fn rules_table(rules: &[Value]) -> Result<Table, Failure> {
    let mut t = Table::new(&[
        "NAME",
        "TYPE",
        "DESTINATION",
        "PORTS",
        "PATHS",
        "STATE",
        "ID",
    ]);
    for r in rules {
        let r: EgressRule = view(r, "egress rule")?;
        let name = if r.crl_managed {
            format!("{} (operator)", r.name)
        } else {
            r.name
        };
        t.row(vec![
            name,
            r.rule_type,
            r.destination,
            joined(&r.ports, "all"),
            joined(&r.paths, "any"),
            r.state,
            r.id,
        ]);
    }
    Ok(t)
}

/// Print an answer `{"<key>": rule, "warnings"?: [...]}`.
fn emit_rule(output: super::Output, answer: &Value, key: &str) -> Result<(), Failure> {
    print_warnings(answer);
    let rule = member(answer, key)?;
    emit(output, answer, || {
        Ok(rules_table(std::slice::from_ref(rule))?.render())
    })
}

pub async fn run(args: EgressRulesArgs) -> Result<(), Failure> {
    let output = args.conn.output;
    let api = args.conn.connect()?;
    match args.cmd {
        RulesCmd::Add(a) => {
            let body = a.body()?;
            let id = api.cluster_id(&a.cluster).await?;
            let answer = api.post(&rules_path(&id), &body).await?;
            emit_rule(output, &answer, "Rule")
        }
        RulesCmd::List { cluster, paging } => {
            let id = api.cluster_id(&cluster).await?;
            let (rules, _) = api
                .list(&rules_path(&id), "rules", paging.page_size, &[])
                .await?;
            emit_list(output, rules, rules_table)
        }
        RulesCmd::Get { cluster, rule } => {
            let id = api.cluster_id(&cluster).await?;
            let rule_id = api.rule_id(&id, &rule).await?;
            let answer = api.get(&rule_path(&id, &rule_id)).await?;
            emit_rule(output, &answer, "rule")
        }
        RulesCmd::Edit(e) => {
            let body = e.body()?;
            let id = api.cluster_id(&e.cluster).await?;
            let rule_id = api.rule_id(&id, &e.rule).await?;
            let answer = api.patch(&rule_path(&id, &rule_id), &body).await?;
            emit_rule(output, &answer, "Rule")
        }
        RulesCmd::Delete { cluster, rule } => {
            let id = api.cluster_id(&cluster).await?;
            let rule_id = api.rule_id(&id, &rule).await?;
            let answer = api.delete(&rule_path(&id, &rule_id)).await?;
            emit_rule(output, &answer, "Rule")
        }
    }
}

fn rule_path<'a>(cluster_id: &'a str, rule_id: &'a str) -> [&'a str; 5] {
    [
        "clusters",
        cluster_id,
        "networking",
        "egress-rules",
        rule_id,
    ]
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::RulesCmd;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: RulesCmd,
    }

    fn parse(args: &[&str]) -> Result<RulesCmd, clap::Error> {
        Cli::try_parse_from(std::iter::once("rules").chain(args.iter().copied())).map(|c| c.cmd)
    }

    const ADD: [&str; 8] = [
        "add",
        "c",
        "--name",
        "n",
        "--type",
        "fqdn",
        "--destination",
        "example.com",
    ];

    fn add_body(extra: &[&str]) -> Result<serde_json::Value, String> {
        let args: Vec<&str> = ADD.iter().chain(extra).copied().collect();
        match parse(&args).map_err(|e| e.to_string())? {
            RulesCmd::Add(a) => a.body().map_err(|e| e.to_string()),
            _ => unreachable!(),
        }
    }

    fn edit_body(extra: &[&str]) -> Result<serde_json::Value, String> {
        let args: Vec<&str> = ["edit", "c", "r"].iter().chain(extra).copied().collect();
        match parse(&args).map_err(|e| e.to_string())? {
            RulesCmd::Edit(e) => e.body().map_err(|e| e.to_string()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn add_needs_ports_or_all_ports() {
        let refused = add_body(&[]).unwrap_err();
        assert!(refused.contains("--all-ports"), "{refused}");
        let body = add_body(&["--port", "443,80", "--port", "8443"]).unwrap();
        assert_eq!(body["ports"], json!([443, 80, 8443]));
        assert_eq!(body["type"], "FQDN");
        let every = add_body(&["--all-ports"]).unwrap();
        assert!(every.get("ports").is_none(), "{every}");
        assert!(add_body(&["--all-ports", "--port", "443"]).is_err());
        assert!(add_body(&["--port", "0"]).is_err());
        assert!(add_body(&["--port", "65536"]).is_err());
    }

    #[test]
    fn edit_sends_only_what_changes() {
        assert_eq!(
            edit_body(&["--port", "443"]).unwrap(),
            json!({"ports": [443]})
        );
        assert_eq!(
            edit_body(&["--all-ports", "--all-paths"]).unwrap(),
            json!({"ports": [], "paths": []})
        );
        assert_eq!(
            edit_body(&["--type", "cidr", "--destination", "10.0.0.0/8"]).unwrap(),
            json!({"destination": "10.0.0.0/8", "type": "CIDR"})
        );
        assert!(edit_body(&[]).unwrap_err().contains("nothing to change"));
    }
}
