//! `perimeter workload show|set`.

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::Connection;
use super::api::{Failure, member};
use super::output::{Table, emit, or_dash};

#[derive(Debug, Args)]
pub struct WorkloadArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: WorkloadCmd,
}

#[derive(Debug, Subcommand)]
enum WorkloadCmd {
    /// Show where the cluster's workloads listen, per region.
    Show {
        /// Cluster id or name.
        cluster: String,
    },
    /// Set where the cluster's workload listens in one region; the other regions keep theirs.
    /// The gateways of the region forward admitted ingress connections there.
    Set {
        /// Cluster id or name.
        cluster: String,
        /// The region, e.g. us-east-1.
        region: String,
        /// The SQL workload, `host:port` (`""` unsets it). Unchanged when not given.
        #[arg(long)]
        sql: Option<String>,
        /// The UI workload, `host:port` (`""` unsets it). Unchanged when not given.
        #[arg(long)]
        ui: Option<String>,
    },
}

fn workload_table(w: &Value) -> Result<String, Failure> {
    let mut t = Table::new(&["REGION", "SQL", "UI"]);
    let regions = member(w, "regions")?
        .as_object()
        .ok_or_else(|| Failure::Response(format!("regions is not an object: {w}")))?;
    for (region, r) in regions {
        let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        t.row(vec![
            region.clone(),
            or_dash(field("sql")),
            or_dash(field("ui")),
        ]);
    }
    Ok(t.render())
}

pub async fn run(args: WorkloadArgs) -> Result<(), Failure> {
    let api = args.conn.connect()?;
    let output = args.conn.output;
    match args.cmd {
        WorkloadCmd::Show { cluster } => {
            let id = api.cluster_id(&cluster).await?;
            let w = api.get(&["clusters", &id, "workload"]).await?;
            emit(output, &w, || workload_table(&w))
        }
        WorkloadCmd::Set {
            cluster,
            region,
            sql,
            ui,
        } => {
            if sql.is_none() && ui.is_none() {
                return Err(Failure::Usage(
                    "nothing to set: pass --sql, --ui or both".into(),
                ));
            }
            let id = api.cluster_id(&cluster).await?;
            let current = api.get(&["clusters", &id, "workload"]).await?;
            let mut regions: Map<String, Value> = member(&current, "regions")?
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut r = regions
                .get(&region)
                .cloned()
                .unwrap_or_else(|| json!({"sql": "", "ui": ""}));
            if let Some(sql) = sql {
                r["sql"] = sql.into();
            }
            if let Some(ui) = ui {
                r["ui"] = ui.into();
            }
            regions.insert(region, r);
            let w = api
                .put(
                    &["clusters", &id, "workload"],
                    &json!({ "regions": regions }),
                )
                .await?;
            emit(output, &w, || workload_table(&w))
        }
    }
}
