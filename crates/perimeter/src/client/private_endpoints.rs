//! `perimeter private-endpoints services|connections|trusted-owners ...`: the ingress side of
//! private connectivity, where other accounts' endpoints reach the cluster.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Connection;
use super::api::{Failure, member};
use super::output::{Table, emit, emit_list, or_dash};

#[derive(Debug, Args)]
pub struct PrivateEndpointsArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: PrivateEndpointsCmd,
}

#[derive(Debug, Subcommand)]
enum PrivateEndpointsCmd {
    /// The cluster's private endpoint services, one per region.
    #[command(subcommand)]
    Services(ServicesCmd),
    /// The endpoints (of other accounts) connected to the cluster's services.
    #[command(subcommand)]
    Connections(ConnectionsCmd),
    /// The accounts whose endpoints may connect; none listed: any.
    #[command(subcommand)]
    TrustedOwners(OwnersCmd),
}

#[derive(Debug, Subcommand)]
enum ServicesCmd {
    /// List the cluster's private endpoint services.
    List {
        /// Cluster id or name.
        cluster: String,
    },
    /// Create the cluster's private endpoint services (one per region).
    Create {
        /// Cluster id or name.
        cluster: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConnectionsCmd {
    /// List the connections to the cluster's services.
    List {
        /// Cluster id or name.
        cluster: String,
    },
    /// Register an endpoint (e.g. vpce-0a1b2c3d4e5f67890) so that its connection is accepted.
    Add {
        /// Cluster id or name.
        cluster: String,
        /// The endpoint's id.
        endpoint_id: String,
    },
    /// Remove an endpoint's registration (its connection is no longer accepted).
    Remove {
        /// Cluster id or name.
        cluster: String,
        /// The endpoint's id.
        endpoint_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum OwnersCmd {
    /// List the trusted owners.
    List {
        /// Cluster id or name.
        cluster: String,
    },
    /// Trust an AWS account (12 digits, or `*` for any).
    Add {
        /// Cluster id or name.
        cluster: String,
        /// The AWS account id.
        account: String,
    },
    /// Show one trusted owner.
    Get {
        /// Cluster id or name.
        cluster: String,
        /// The trusted owner's id.
        owner_id: String,
    },
    /// Stop trusting an owner.
    Remove {
        /// Cluster id or name.
        cluster: String,
        /// The trusted owner's id.
        owner_id: String,
    },
}

fn items(v: &Value, key: &str) -> Result<Vec<Value>, Failure> {
    member(v, key)?
        .as_array()
        .cloned()
        .ok_or_else(|| Failure::Response(format!("{key} is not a list: {v}")))
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn services_table(list: &[Value]) -> Result<Table, Failure> {
    let mut t = Table::new(&["REGION", "STATUS", "SERVICE NAME", "SERVICE ID"]);
    for s in list {
        t.row(vec![
            text(s, "region_name"),
            text(s, "status"),
            or_dash(&text(s, "name")),
            or_dash(&text(s, "endpoint_service_id")),
        ]);
    }
    Ok(t)
}

fn connections_table(list: &[Value]) -> Result<Table, Failure> {
    let mut t = Table::new(&["ENDPOINT", "REGION", "STATUS", "SERVICE NAME"]);
    for c in list {
        t.row(vec![
            text(c, "endpoint_id"),
            text(c, "region_name"),
            text(c, "status"),
            or_dash(&text(c, "service_name")),
        ]);
    }
    Ok(t)
}

fn owners_table(list: &[Value]) -> Result<Table, Failure> {
    let mut t = Table::new(&["ID", "TYPE", "OWNER", "CREATED"]);
    for o in list {
        t.row(vec![
            text(o, "id"),
            text(o, "type"),
            text(o, "external_owner_id"),
            text(o, "created_at"),
        ]);
    }
    Ok(t)
}

pub async fn run(args: PrivateEndpointsArgs) -> Result<(), Failure> {
    let api = args.conn.connect()?;
    let output = args.conn.output;
    let networking = |id: &str, what: &'static str| -> [String; 4] {
        [
            "clusters".into(),
            id.to_string(),
            "networking".into(),
            what.into(),
        ]
    };
    let path = |p: &[String]| p.to_vec();
    match args.cmd {
        PrivateEndpointsCmd::Services(cmd) => {
            let (cluster, create) = match cmd {
                ServicesCmd::List { cluster } => (cluster, false),
                ServicesCmd::Create { cluster } => (cluster, true),
            };
            let id = api.cluster_id(&cluster).await?;
            let p = path(&networking(&id, "private-endpoint-services"));
            let seg: Vec<&str> = p.iter().map(String::as_str).collect();
            let v = if create {
                api.post(&seg, &json!({})).await?
            } else {
                api.get(&seg).await?
            };
            emit_list(output, items(&v, "services")?, services_table)
        }
        PrivateEndpointsCmd::Connections(cmd) => match cmd {
            ConnectionsCmd::List { cluster } => {
                let id = api.cluster_id(&cluster).await?;
                let p = path(&networking(&id, "private-endpoint-connections"));
                let seg: Vec<&str> = p.iter().map(String::as_str).collect();
                let v = api.get(&seg).await?;
                emit_list(output, items(&v, "connections")?, connections_table)
            }
            ConnectionsCmd::Add {
                cluster,
                endpoint_id,
            } => {
                let id = api.cluster_id(&cluster).await?;
                let p = path(&networking(&id, "private-endpoint-connections"));
                let seg: Vec<&str> = p.iter().map(String::as_str).collect();
                let v = api
                    .post(&seg, &json!({ "endpoint_id": endpoint_id }))
                    .await?;
                emit(output, &v, || {
                    Ok(connections_table(std::slice::from_ref(&v))?.render())
                })
            }
            ConnectionsCmd::Remove {
                cluster,
                endpoint_id,
            } => {
                let id = api.cluster_id(&cluster).await?;
                let mut p = path(&networking(&id, "private-endpoint-connections"));
                p.push(endpoint_id.clone());
                let seg: Vec<&str> = p.iter().map(String::as_str).collect();
                let v = api.delete(&seg).await?;
                emit(output, &v, || {
                    Ok(format!("removed the registration of {endpoint_id}"))
                })
            }
        },
        PrivateEndpointsCmd::TrustedOwners(cmd) => {
            let (cluster, rest) = match &cmd {
                OwnersCmd::List { cluster } | OwnersCmd::Add { cluster, .. } => {
                    (cluster.clone(), None)
                }
                OwnersCmd::Get { cluster, owner_id } | OwnersCmd::Remove { cluster, owner_id } => {
                    (cluster.clone(), Some(owner_id.clone()))
                }
            };
            let id = api.cluster_id(&cluster).await?;
            let mut p = path(&networking(&id, "private-endpoint-trusted-owners"));
            if let Some(owner) = rest {
                p.push(owner);
            }
            let seg: Vec<&str> = p.iter().map(String::as_str).collect();
            match cmd {
                OwnersCmd::List { .. } => {
                    let v = api.get(&seg).await?;
                    emit_list(output, items(&v, "trusted_owners")?, owners_table)
                }
                OwnersCmd::Add { account, .. } => {
                    let v = api
                        .post(
                            &seg,
                            &json!({"type": "AWS_ACCOUNT_ID", "external_owner_id": account}),
                        )
                        .await?;
                    let owner = member(&v, "trusted_owner")?.clone();
                    emit(output, &v, || Ok(owners_table(&[owner])?.render()))
                }
                OwnersCmd::Get { .. } => {
                    let v = api.get(&seg).await?;
                    let owner = member(&v, "trusted_owner")?.clone();
                    emit(output, &v, || Ok(owners_table(&[owner])?.render()))
                }
                OwnersCmd::Remove { .. } => {
                    let v = api.delete(&seg).await?;
                    let owner = member(&v, "trusted_owner")?.clone();
                    emit(output, &v, || {
                        Ok(format!(
                            "no longer trusting {}",
                            text(&owner, "external_owner_id")
                        ))
                    })
                }
            }
        }
    }
}
