//! `perimeter endpoint-services create|list|get|delete|connections|accept|reject`: the service
//! side of private endpoints on the `local` provider.

use clap::{Args, Subcommand};
use perimeter_policy::BackendDoc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Failure, view};
use super::output::{Table, emit, emit_list, joined, or_dash};
use super::{Connection, Paging};

#[derive(Debug, Args)]
pub struct EndpointServicesArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: ServicesCmd,
}

#[derive(Debug, Subcommand)]
enum ServicesCmd {
    /// Register a service that clusters reach through egress private endpoints naming it
    /// (`perimeter egress-endpoints create --target NAME`). Backends are not dialled at
    /// registration.
    Create(CreateArgs),
    /// List the registered services.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one service.
    Get {
        /// Service id or name.
        service: String,
    },
    /// Delete a service; refused while an endpoint is connected to it or waits for acceptance.
    Delete {
        /// Service id or name.
        service: String,
    },
    /// The connections of egress private endpoints to a service, with their status.
    Connections {
        /// Service id or name.
        service: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Accept a connection waiting in PENDING_ACCEPTANCE; its endpoint then goes on to AVAILABLE.
    Accept {
        /// Service id or name.
        service: String,
        /// Connection id (`perimeter endpoint-services connections` lists them).
        connection_id: String,
    },
    /// Reject a connection waiting in PENDING_ACCEPTANCE; its endpoint reads REJECTED.
    Reject {
        /// Service id or name.
        service: String,
        /// Connection id (`perimeter endpoint-services connections` lists them).
        connection_id: String,
    },
}

const BACKENDS_HELP: &str = "\
Backends (--backend, repeatable):
  127.0.0.1:9092
      takes the connections to the endpoint's port 9092 (backends sharing a port take turns)
  127.0.0.1:9093=b-1.kafka.example,b-1.internal.example
      takes the TLS connections to port 9093 whose SNI is one of these names (wildcards such
      as *.kafka.example allowed), without terminating TLS; a ClientHello whose SNI no backend
      names is refused

Loopback, private and CGNAT backends are special addresses: only a PLATFORM_OPERATOR may
register them, with --allow-special-addresses.

Three Kafka brokers behind one service, routed by SNI:
  perimeter endpoint-services create --name com.amazonaws.vpce.us-east-1.vpce-svc-kafka \\
    --region us-east-1 --allow-special-addresses --backend 10.0.0.1:9092=b-1.kafka.example \\
    --backend 10.0.0.2:9092=b-2.kafka.example --backend 10.0.0.3:9092=b-3.kafka.example";

#[derive(Debug, Args)]
#[command(after_help = BACKENDS_HELP)]
struct CreateArgs {
    /// Service name that endpoints give as their target, e.g.
    /// com.amazonaws.vpce.us-east-1.vpce-svc-example (unique).
    #[arg(long)]
    name: String,
    /// Region of the service; endpoints of that region reach it.
    #[arg(long)]
    region: String,
    /// What the forwarders dial, repeatable: `host:port` for the connections to its port, or
    /// `host:port=NAME[,NAME...]` for a backend that serves those TLS server names (several
    /// brokers behind one service, routed by SNI). IPv6 in brackets: `[::1]:9092`.
    #[arg(long = "backend", value_name = "HOST:PORT[=NAMES]", required = true, value_parser = parse_backend)]
    backends: Vec<BackendDoc>,
    /// Open each backend connection with a PROXY protocol v2 header carrying the client address
    /// and the endpoint's connection id (as an AWS NLB does).
    #[arg(long)]
    proxy_protocol: bool,
    /// Connections wait in PENDING_ACCEPTANCE until accepted or rejected (`accept`, `reject`),
    /// except those from --auto-accept accounts. Without it every connection is accepted.
    #[arg(long)]
    acceptance_required: bool,
    /// A cluster's `account_id` whose connections are accepted at once; repeatable.
    #[arg(
        long = "auto-accept",
        value_name = "ACCOUNT",
        requires = "acceptance_required"
    )]
    auto_accept: Vec<String>,
    /// How long a connection may wait for acceptance before it reads EXPIRED (default 7 days).
    #[arg(long, value_name = "SECONDS", requires = "acceptance_required")]
    acceptance_timeout_seconds: Option<i64>,
    /// Let backends be special addresses (loopback, private, CGNAT), which the address guard
    /// refuses otherwise: the platform's own network. PLATFORM_OPERATOR only.
    #[arg(long)]
    allow_special_addresses: bool,
}

/// `host:port` or `host:port=name[,name...]`; the API checks the address and the names.
fn parse_backend(s: &str) -> Result<BackendDoc, String> {
    let (address, names) = match s.split_once('=') {
        None => (s, None),
        Some((address, names)) => (address, Some(names)),
    };
    if address.is_empty() {
        return Err(format!("{s:?}: give the backend as host:port[=name,...]"));
    }
    let server_names: Vec<String> = match names {
        None => Vec::new(),
        Some(names) => names.split(',').map(str::to_string).collect(),
    };
    if server_names.iter().any(String::is_empty) {
        return Err(format!(
            "{s:?}: after `=` give one or more server names separated by commas, e.g. 127.0.0.1:9093=b-1.kafka.example"
        ));
    }
    Ok(BackendDoc {
        address: address.to_string(),
        server_names,
    })
}

/// A backend as the `--backend` flag spells it.
fn backend_text(b: &BackendDoc) -> String {
    if b.server_names.is_empty() {
        b.address.clone()
    } else {
        format!("{}={}", b.address, b.server_names.join(","))
    }
}

/// The fields of a service the table shows.
#[derive(Deserialize)]
struct ServiceView {
    id: String,
    service_name: String,
    region: String,
    backends: Vec<BackendDoc>,
    proxy_protocol: bool,
    acceptance_required: bool,
    auto_accept_accounts: Vec<String>,
}

fn services_table(services: &[Value]) -> Result<Table, Failure> {
    let mut t = Table::new(&[
        "NAME",
        "REGION",
        "ACCEPTANCE",
        "AUTO_ACCEPT",
        "PROXY_PROTOCOL",
        "ID",
        "BACKENDS",
    ]);
    for s in services {
        let s: ServiceView = view(s, "endpoint service")?;
        let acceptance = if s.acceptance_required {
            "required"
        } else {
            "automatic"
        };
        t.row(vec![
            s.service_name,
            s.region,
            acceptance.to_string(),
            joined(&s.auto_accept_accounts, "-"),
            s.proxy_protocol.to_string(),
            s.id,
            s.backends
                .iter()
                .map(backend_text)
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    Ok(t)
}

fn emit_service(output: super::Output, service: &Value) -> Result<(), Failure> {
    emit(output, service, || {
        Ok(services_table(std::slice::from_ref(service))?.render())
    })
}

/// The fields of a connection the table shows.
#[derive(Deserialize)]
struct ConnectionView {
    id: String,
    cluster_id: String,
    account_id: String,
    egress_private_endpoint_id: String,
    status: String,
    created_at: String,
}

fn connections_table(connections: &[Value]) -> Result<Table, Failure> {
    let mut t = Table::new(&["ID", "STATUS", "ACCOUNT", "CLUSTER", "ENDPOINT", "CREATED"]);
    for c in connections {
        let c: ConnectionView = view(c, "endpoint connection")?;
        t.row(vec![
            c.id,
            c.status,
            or_dash(&c.account_id),
            c.cluster_id,
            c.egress_private_endpoint_id,
            c.created_at,
        ]);
    }
    Ok(t)
}

pub async fn run(args: EndpointServicesArgs) -> Result<(), Failure> {
    let api = args.conn.connect()?;
    let output = args.conn.output;
    match args.cmd {
        ServicesCmd::Create(a) => {
            let mut body = json!({
                "service_name": a.name,
                "region": a.region,
                "backends": a.backends,
                "proxy_protocol": a.proxy_protocol,
                "acceptance_required": a.acceptance_required,
                "auto_accept_accounts": a.auto_accept,
                "allow_special_addresses": a.allow_special_addresses,
            });
            if let Some(t) = a.acceptance_timeout_seconds {
                body["acceptance_timeout_seconds"] = json!(t);
            }
            let service = api.post(&["endpoint-services"], &body).await?;
            emit_service(output, &service)
        }
        ServicesCmd::List { paging } => {
            let (services, _) = api
                .list(
                    &["endpoint-services"],
                    "endpoint_services",
                    paging.page_size,
                    &[],
                )
                .await?;
            emit_list(output, services, services_table)
        }
        ServicesCmd::Get { service } => {
            let id = api.service_id(&service).await?;
            let service = api.get(&["endpoint-services", &id]).await?;
            emit_service(output, &service)
        }
        ServicesCmd::Delete { service } => {
            let id = api.service_id(&service).await?;
            let answer = api.delete(&["endpoint-services", &id]).await?;
            emit(output, &answer, || {
                Ok(format!("endpoint service {service} deleted\n"))
            })
        }
        ServicesCmd::Connections { service, paging } => {
            let id = api.service_id(&service).await?;
            let (connections, _) = api
                .list(
                    &["endpoint-services", &id, "connections"],
                    "connections",
                    paging.page_size,
                    &[],
                )
                .await?;
            emit_list(output, connections, connections_table)
        }
        ServicesCmd::Accept {
            service,
            connection_id,
        } => decide(&api, output, &service, &connection_id, "accept").await,
        ServicesCmd::Reject {
            service,
            connection_id,
        } => decide(&api, output, &service, &connection_id, "reject").await,
    }
}

async fn decide(
    api: &super::api::Api,
    output: super::Output,
    service: &str,
    connection_id: &str,
    verb: &str,
) -> Result<(), Failure> {
    let id = api.service_id(service).await?;
    let connection = api
        .post(
            &["endpoint-services", &id, "connections", connection_id, verb],
            &json!({}),
        )
        .await?;
    emit(output, &connection, || {
        Ok(connections_table(std::slice::from_ref(&connection))?.render())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_with_and_without_server_names() {
        let plain = parse_backend("127.0.0.1:9092").unwrap();
        assert_eq!(plain, BackendDoc::plain("127.0.0.1:9092"));
        let v6 = parse_backend("[::1]:9093=b-1.kafka.example,*.kafka.example").unwrap();
        assert_eq!(v6.address, "[::1]:9093");
        assert_eq!(v6.server_names, ["b-1.kafka.example", "*.kafka.example"]);
        assert_eq!(
            backend_text(&v6),
            "[::1]:9093=b-1.kafka.example,*.kafka.example"
        );
        for bad in ["", "=b-1.kafka.example", "127.0.0.1:9093=", "h:1=a,,b"] {
            assert!(parse_backend(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backends_go_to_the_api_in_its_two_shapes() {
        let backends = [
            parse_backend("127.0.0.1:9092").unwrap(),
            parse_backend("127.0.0.1:9093=b-1.kafka.example").unwrap(),
        ];
        assert_eq!(
            json!(backends),
            json!(["127.0.0.1:9092", {"address": "127.0.0.1:9093", "server_names": ["b-1.kafka.example"]}])
        );
    }
}
