//! `perimeter check`: what the cluster's gateways would decide for a destination. For a name,
//! the control plane resolves it as the gateways do and lists each address with its verdict.
//! With `--ingress`, what the public `--sql` or `--ui` listener decides for a source address,
//! and the allowlist entry that decides it; with `--ingress --private`, what the private
//! ingress listener decides for an endpoint id.

use clap::Args;
use serde_json::json;

use super::Connection;
use super::api::{Failure, member};
use super::output::{Table, emit, or_dash};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    conn: Connection,
    /// Cluster id or name.
    cluster: String,
    /// Host name or canonical IP literal; with --ingress, the connection's source address
    /// (with --private, the endpoint id its PROXY v2 header names).
    destination: String,
    /// TCP port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..), required_unless_present = "ingress")]
    port: Option<u16>,
    /// Request path, for path rules (plain HTTP or inspected HTTPS).
    #[arg(long, conflicts_with = "ingress")]
    path: Option<String>,
    /// Judge an ingress connection from the source address instead: what the public --sql or
    /// --ui listener decides by the IP allowlist.
    #[arg(long, conflicts_with = "port")]
    ingress: bool,
    /// With --ingress: the SQL listener.
    #[arg(long, requires = "ingress", conflicts_with = "ui")]
    sql: bool,
    /// With --ingress: the UI listener.
    #[arg(long, requires = "ingress", conflicts_with = "private")]
    ui: bool,
    /// With --ingress: the private ingress listener, judging the endpoint id given as the
    /// destination.
    #[arg(long, requires = "ingress", conflicts_with = "sql")]
    private: bool,
}

async fn run_ingress(args: CheckArgs) -> Result<(), Failure> {
    let listener = match (args.sql, args.ui, args.private) {
        (true, false, false) => "sql",
        (false, true, false) => "ui",
        (false, false, true) => "private",
        _ => {
            return Err(Failure::Usage(
                "--ingress judges one listener: pass --sql, --ui or --private".into(),
            ));
        }
    };
    let api = args.conn.connect()?;
    let id = api.cluster_id(&args.cluster).await?;
    let body = if args.private {
        json!({"listener": listener, "endpoint_id": args.destination})
    } else {
        json!({"source": args.destination, "listener": listener})
    };
    let answer = api
        .post(&["clusters", &id, "networking", "ingress-check"], &body)
        .await?;
    emit(args.conn.output, &answer, || {
        let mut t = Table::new(&[
            "SOURCE", "LISTENER", "ADMITTED", "REASON", "ENTRY", "SNAPSHOT",
        ]);
        let entry = answer
            .get("entry")
            .filter(|e| !e.is_null())
            .map(|e| {
                let text = |f| e.get(f).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let mask = e
                    .get("cidr_mask")
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let name = text("name");
                if name.is_empty() {
                    format!("{}/{mask}", text("cidr_ip"))
                } else {
                    format!("{}/{mask} ({name})", text("cidr_ip"))
                }
            })
            .unwrap_or_default();
        let text = |f| -> Result<String, Failure> {
            Ok(member(&answer, f)?.as_str().unwrap_or_default().to_string())
        };
        let source = match answer.get("endpoint_id").and_then(|v| v.as_str()) {
            Some(endpoint) => endpoint.to_string(),
            None => text("source")?,
        };
        t.row(vec![
            source,
            text("listener")?,
            member(&answer, "admitted")?.to_string(),
            text("reason")?,
            or_dash(&entry),
            member(&answer, "version")?.to_string(),
        ]);
        Ok(t.render())
    })
}

pub async fn run(args: CheckArgs) -> Result<(), Failure> {
    if args.ingress {
        return run_ingress(args).await;
    }
    let Some(port) = args.port else {
        return Err(Failure::Usage("--port is required".into()));
    };
    let api = args.conn.connect()?;
    let id = api.cluster_id(&args.cluster).await?;
    let mut body = json!({"destination": args.destination, "port": port});
    if let Some(p) = &args.path {
        body["path"] = json!(p);
    }
    let answer = api
        .post(&["clusters", &id, "networking", "egress-check"], &body)
        .await?;
    super::print_warnings(&answer);
    emit(args.conn.output, &answer, || {
        let mut t = Table::new(&["ALLOWED", "DEFAULT-DENY", "RULE", "REASON", "SNAPSHOT"]);
        let rule = answer
            .get("rule")
            .and_then(|r| r.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("");
        t.row(vec![
            member(&answer, "allowed")?.to_string(),
            member(&answer, "would_allow_under_default_deny")?.to_string(),
            or_dash(rule),
            member(&answer, "reason")?
                .as_str()
                .unwrap_or_default()
                .to_string(),
            member(&answer, "snapshot_version")?.to_string(),
        ]);
        let mut text = t.render();
        // A name is judged per address the gateways resolve: each one, the dialled one marked.
        if let Some(addresses) = answer.get("addresses").and_then(|a| a.as_array()) {
            let mut t = Table::new(&["ADDRESS", "ALLOWED", "RULE", "REASON", "DIALLED"]);
            for a in addresses {
                let text = |field| a.get(field).and_then(|v| v.as_str()).unwrap_or("");
                let flag = |field| a.get(field).and_then(|v| v.as_bool()).unwrap_or(false);
                t.row(vec![
                    text("address").to_string(),
                    flag("allowed").to_string(),
                    or_dash(text("rule_name")),
                    text("reason").to_string(),
                    if flag("dialled") { "yes" } else { "-" }.to_string(),
                ]);
            }
            text.push('\n');
            text.push_str(&t.render());
        }
        if let Some(e) = answer.get("resolution_error").filter(|e| !e.is_null()) {
            let field = |f| e.get(f).and_then(|v| v.as_str()).unwrap_or("");
            text.push_str(&format!(
                "\nunresolved: {} ({})\n",
                field("message"),
                field("reason")
            ));
        }
        Ok(text)
    })
}
