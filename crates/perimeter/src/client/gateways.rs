//! `perimeter gateways create|list|delete`: register the gateways that enforce a cluster's
//! policy, and get the token `perimeter gateway --token` needs.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::api::{Failure, member};
use super::output::{Table, emit, or_dash};
use super::{Connection, note};

#[derive(Debug, Args)]
pub struct GatewaysArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: GatewaysCmd,
}

#[derive(Debug, Subcommand)]
enum GatewaysCmd {
    /// Register a gateway for a region of the cluster; prints its token once.
    Create {
        /// Cluster id or name.
        cluster: String,
        /// A region of the cluster.
        #[arg(long)]
        region: String,
        /// Unique in the cluster, e.g. the host it runs on.
        #[arg(long)]
        name: String,
    },
    /// The cluster's gateways: when each was last seen and which policy version it applied.
    List {
        /// Cluster id or name.
        cluster: String,
    },
    /// Deregister a gateway; its token stops working at once.
    Delete {
        /// Cluster id or name.
        cluster: String,
        /// Gateway id.
        gateway: String,
    },
}

fn table(gws: &[Value]) -> Result<String, Failure> {
    let mut t = Table::new(&[
        "NAME",
        "REGION",
        "LIVE",
        "APPLIED",
        "LAST SEEN",
        "LAST ERROR",
        "ID",
    ]);
    for g in gws {
        let s = |k: &str| member(g, k).map(|v| v.as_str().unwrap_or_default().to_string());
        t.row(vec![
            s("name")?,
            s("region")?,
            member(g, "live")?.to_string(),
            member(g, "applied_version")?.to_string(),
            or_dash(g.get("last_seen_at").and_then(Value::as_str).unwrap_or("")),
            or_dash(&s("last_error")?),
            s("id")?,
        ]);
    }
    Ok(t.render())
}

pub async fn run(args: GatewaysArgs) -> Result<(), Failure> {
    let api = args.conn.connect()?;
    let output = args.conn.output;
    match args.cmd {
        GatewaysCmd::Create {
            cluster,
            region,
            name,
        } => {
            let id = api.cluster_id(&cluster).await?;
            let answer = api
                .post(
                    &["clusters", &id, "gateways"],
                    &json!({"region": region, "name": name}),
                )
                .await?;
            emit(output, &answer, || {
                let token = member(&answer, "token")?.as_str().unwrap_or_default();
                Ok(format!(
                    "{}{token}\n",
                    table(std::slice::from_ref(member(&answer, "gateway")?))?
                ))
            })?;
            note(
                "the last line is the gateway's token, shown once: pass it to `perimeter gateway --token` (or PERIMETER_GATEWAY_TOKEN)",
            );
            Ok(())
        }
        GatewaysCmd::List { cluster } => {
            let id = api.cluster_id(&cluster).await?;
            let answer = api.get(&["clusters", &id, "gateways"]).await?;
            let items = member(&answer, "gateways")?
                .as_array()
                .cloned()
                .unwrap_or_default();
            emit(output, &Value::Array(items.clone()), || table(&items))
        }
        GatewaysCmd::Delete { cluster, gateway } => {
            let id = api.cluster_id(&cluster).await?;
            let answer = api.delete(&["clusters", &id, "gateways", &gateway]).await?;
            emit(output, &answer, || table(std::slice::from_ref(&answer)))
        }
    }
}
