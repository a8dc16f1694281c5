//! `perimeter check`: what the cluster's gateways would decide for a destination. For a name,
//! the control plane resolves it as the gateways do and lists each address with its verdict.

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
    /// Host name or canonical IP literal.
    destination: String,
    /// TCP port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Request path, for path rules (plain HTTP or inspected HTTPS).
    #[arg(long)]
    path: Option<String>,
}

pub async fn run(args: CheckArgs) -> Result<(), Failure> {
    let api = args.conn.connect()?;
    let id = api.cluster_id(&args.cluster).await?;
    let mut body = json!({"destination": args.destination, "port": args.port});
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
