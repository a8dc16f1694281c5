//! `perimeter egress-endpoints create|list|get|set-domains|delete`.

use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Failure, view};
use super::output::{Table, emit, emit_list, joined, or_dash};
use super::{Connection, Paging};

#[derive(Debug, Args)]
pub struct EgressEndpointsArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: EndpointsCmd,
}

#[derive(Debug, Subcommand)]
enum EndpointsCmd {
    /// Create an endpoint to a private service. It reads PENDING (and the cluster refuses other
    /// networking changes) until every gateway of the region serves it: then AVAILABLE, and
    /// `CONNECT <ADDRESS>:<port>` through the region's egress proxy reaches the service.
    Create {
        /// Cluster id or name.
        cluster: String,
        /// Region of the cluster the endpoint lives in; must match the target's region.
        #[arg(long)]
        region: String,
        /// The service: e.g. com.amazonaws.vpce.us-east-1.vpce-svc-..., an MSK cluster ARN, a GCP
        /// service attachment or an Azure Private Link service.
        #[arg(long)]
        target: String,
        /// Kind of service behind the target.
        #[arg(long = "type", value_enum, ignore_case = true)]
        target_type: TargetType,
    },
    /// List a cluster's endpoints.
    List {
        /// Cluster id or name.
        cluster: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one endpoint.
    Get {
        /// Cluster id or name.
        cluster: String,
        /// Endpoint id.
        endpoint_id: String,
    },
    /// Set the custom domain names that resolve to an AVAILABLE endpoint (replaces the list).
    SetDomains {
        /// Cluster id or name.
        cluster: String,
        /// Endpoint id.
        endpoint_id: String,
        /// Domain names, e.g. kafka.internal.example.com.
        #[arg(required_unless_present = "clear")]
        domains: Vec<String>,
        /// Remove every custom domain name.
        #[arg(long, conflicts_with = "domains")]
        clear: bool,
    },
    /// Delete an endpoint (DELETING, then gone).
    Delete {
        /// Cluster id or name.
        cluster: String,
        /// Endpoint id.
        endpoint_id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
enum TargetType {
    PrivateService,
    MskSaslScram,
    MskSaslIam,
    MskTls,
}

impl TargetType {
    fn as_str(self) -> &'static str {
        match self {
            TargetType::PrivateService => "PRIVATE_SERVICE",
            TargetType::MskSaslScram => "MSK_SASL_SCRAM",
            TargetType::MskSaslIam => "MSK_SASL_IAM",
            TargetType::MskTls => "MSK_TLS",
        }
    }
}

/// The fields of an endpoint the table shows.
#[derive(Deserialize)]
struct EndpointView {
    id: String,
    region: String,
    target_service_identifier: String,
    target_service_type: String,
    endpoint_address: String,
    state: String,
    domain_names: Vec<String>,
    domain_names_state: String,
    /// Absent from servers older than metering.
    #[serde(default)]
    bytes_processed: i64,
}

fn endpoints_table(endpoints: &[Value]) -> Result<Table, Failure> {
    let mut t = Table::new(&[
        "ID", "REGION", "TYPE", "TARGET", "STATE", "ADDRESS", "BYTES", "DOMAINS",
    ]);
    for e in endpoints {
        let e: EndpointView = view(e, "egress private endpoint")?;
        let domains = match e.domain_names_state.as_str() {
            "EMPTY" | "AVAILABLE" | "" => joined(&e.domain_names, "-"),
            state => format!("{} ({state})", joined(&e.domain_names, "-")),
        };
        t.row(vec![
            e.id,
            e.region,
            e.target_service_type,
            e.target_service_identifier,
            e.state,
            or_dash(&e.endpoint_address),
            e.bytes_processed.to_string(),
            domains,
        ]);
    }
    Ok(t)
}

fn emit_endpoint(output: super::Output, endpoint: &Value) -> Result<(), Failure> {
    emit(output, endpoint, || {
        Ok(endpoints_table(std::slice::from_ref(endpoint))?.render())
    })
}

pub async fn run(args: EgressEndpointsArgs) -> Result<(), Failure> {
    let api = args.conn.connect()?;
    let output = args.conn.output;
    match args.cmd {
        EndpointsCmd::Create {
            cluster,
            region,
            target,
            target_type,
        } => {
            let id = api.cluster_id(&cluster).await?;
            let body = json!({
                "region": region,
                "target_service_identifier": target,
                "target_service_type": target_type.as_str(),
            });
            let endpoint = api.post(&endpoints_path(&id), &body).await?;
            emit_endpoint(output, &endpoint)
        }
        EndpointsCmd::List { cluster, paging } => {
            let id = api.cluster_id(&cluster).await?;
            let (endpoints, _) = api
                .list(
                    &endpoints_path(&id),
                    "egress_private_endpoints",
                    paging.page_size,
                    &[],
                )
                .await?;
            emit_list(output, endpoints, endpoints_table)
        }
        EndpointsCmd::Get {
            cluster,
            endpoint_id,
        } => {
            let id = api.cluster_id(&cluster).await?;
            let endpoint = api.get(&endpoint_path(&id, &endpoint_id)).await?;
            emit_endpoint(output, &endpoint)
        }
        EndpointsCmd::SetDomains {
            cluster,
            endpoint_id,
            domains,
            clear: _,
        } => {
            let id = api.cluster_id(&cluster).await?;
            let endpoint = api
                .patch(
                    &endpoint_path(&id, &endpoint_id),
                    &json!({ "domain_names": domains }),
                )
                .await?;
            emit_endpoint(output, &endpoint)
        }
        EndpointsCmd::Delete {
            cluster,
            endpoint_id,
        } => {
            let id = api.cluster_id(&cluster).await?;
            let answer = api.delete(&endpoint_path(&id, &endpoint_id)).await?;
            emit(output, &answer, || {
                Ok(format!(
                    "egress private endpoint {endpoint_id} is being deleted (DELETING, then gone)\n"
                ))
            })
        }
    }
}

fn endpoints_path(cluster_id: &str) -> [&str; 4] {
    [
        "clusters",
        cluster_id,
        "networking",
        "egress-private-endpoints",
    ]
}

fn endpoint_path<'a>(cluster_id: &'a str, endpoint_id: &'a str) -> [&'a str; 5] {
    [
        "clusters",
        cluster_id,
        "networking",
        "egress-private-endpoints",
        endpoint_id,
    ]
}
