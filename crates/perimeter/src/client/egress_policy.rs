//! `perimeter egress-policy set|get`.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::api::Failure;
use super::clusters::policy_table;
use super::output::emit;
use super::{Connection, Output, note};

#[derive(Debug, Args)]
pub struct EgressPolicyArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: PolicyCmd,
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Set the policy. The cluster reads UPDATING (and refuses other networking changes) until
    /// every gateway of the cluster has applied it.
    Set {
        /// Cluster id or name.
        cluster: String,
        #[command(flatten)]
        policy: PolicyChoice,
    },
    /// Show the cluster's current policy.
    Get {
        /// Cluster id or name.
        cluster: String,
    },
}

/// Exactly one of the three policies.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PolicyChoice {
    /// Refuse every connection no egress rule allows.
    #[arg(long)]
    default_deny: bool,
    /// Allow every connection.
    #[arg(long)]
    allow_all: bool,
    /// Allow every connection, and log and count those DEFAULT_DENY would refuse.
    #[arg(long)]
    report_only: bool,
}

impl PolicyChoice {
    /// The request body and the policy's name.
    fn body(&self) -> (Value, &'static str) {
        if self.allow_all {
            (json!({"allow_all": true}), "ALLOW_ALL")
        } else if self.report_only {
            (
                json!({"allow_all": false, "report_only": true}),
                "REPORT_ONLY",
            )
        } else {
            (json!({"allow_all": false}), "DEFAULT_DENY")
        }
    }
}

pub async fn run(args: EgressPolicyArgs) -> Result<(), Failure> {
    let api = args.conn.connect()?;
    let output = args.conn.output;
    match args.cmd {
        PolicyCmd::Set { cluster, policy } => {
            let id = api.cluster_id(&cluster).await?;
            let (body, name) = policy.body();
            let answer = api
                .post(
                    &[
                        "clusters",
                        &id,
                        "networking",
                        "egress-rules",
                        "egress-traffic-policy",
                    ],
                    &body,
                )
                .await?;
            emit(output, &answer, || {
                Ok(format!(
                    "egress traffic policy of cluster {cluster} is changing to {name}\n"
                ))
            })?;
            if output == Output::Table {
                note(
                    "the cluster reads UPDATING until every gateway applies it (`perimeter egress-policy get` shows it)",
                );
            }
            Ok(())
        }
        PolicyCmd::Get { cluster } => {
            let id = api.cluster_id(&cluster).await?;
            let cluster = api.get(&["clusters", &id]).await?;
            policy_table(output, &cluster)
        }
    }
}
