//! `perimeter clusters create|list|get|visibility|credential-roles|tls-inspection|delete`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::{Failure, member, view};
use super::output::{Table, emit, emit_list, or_dash};
use super::{Connection, Output, Paging};

#[derive(Debug, Args)]
pub struct ClustersArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: ClustersCmd,
}

#[derive(Debug, Subcommand)]
enum ClustersCmd {
    /// Create a cluster, e.g. `clusters create my-cluster --provider AWS --region us-east-1=3`.
    Create {
        /// 6-20 characters of a-z, 0-9 and '-', not starting or ending with '-'.
        name: String,
        /// Cloud provider; it decides how region names are spelled.
        #[arg(long, value_enum, ignore_case = true)]
        provider: Provider,
        /// A region and its node count, NAME=NODES (repeat for more regions), e.g. us-east-1=3.
        #[arg(long = "region", value_name = "NAME=NODES", required = true, value_parser = parse_region)]
        regions: Vec<(String, u32)>,
        /// Plan (default ADVANCED).
        #[arg(long)]
        plan: Option<String>,
        /// Start with egress traffic policy DEFAULT_DENY instead of ALLOW_ALL.
        #[arg(long)]
        restrict_egress: bool,
        /// Network visibility PRIVATE instead of PUBLIC.
        #[arg(long)]
        private: bool,
    },
    /// List clusters.
    List {
        /// Include deleted clusters.
        #[arg(long)]
        show_inactive: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a cluster and its regions (with each region's egress proxy address).
    Get {
        /// Cluster id or name.
        cluster: String,
    },
    /// Open (PUBLIC) or close (PRIVATE) the public ingress listeners, e.g. `clusters visibility
    /// my-cluster private`. The cluster reads LOCKED until every live gateway applied it.
    Visibility {
        /// Cluster id or name.
        cluster: String,
        #[arg(value_enum, ignore_case = true)]
        visibility: Visibility,
    },
    /// Show or change the cluster's functional roles: per purpose (backup, changefeed), the
    /// role the platform puts first in every role chain the cluster's jobs assume, i.e. the role
    /// your own roles must trust. Changing them takes PLATFORM_OPERATOR, e.g. `clusters
    /// credential-roles my-cluster --set
    /// 'backup=arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}'`.
    #[command(name = "credential-roles")]
    CredentialRoles {
        /// Cluster id or name.
        cluster: String,
        /// Set one purpose's role ARN template, PURPOSE=TEMPLATE (repeat for more); templates
        /// may use {cluster_id} and {account_id}. Other purposes keep theirs.
        #[arg(long = "set", value_name = "PURPOSE=TEMPLATE", value_parser = parse_role)]
        set: Vec<(String, String)>,
        /// Remove one purpose's role (repeat for more).
        #[arg(long = "unset", value_name = "PURPOSE")]
        unset: Vec<String>,
        /// Remove every role first (with --set: replace the whole set).
        #[arg(long)]
        clear: bool,
    },
    /// Show or change TLS inspection of the cluster's egress: with it on, the gateways can hold
    /// path rules over HTTPS, presenting certificates from the cluster's inspection CA, which
    /// workloads must trust (`--ca-out` writes it). The CA is made on the first `--enable` and
    /// kept. Changing it takes CLUSTER_ADMIN or ORG_ADMIN, e.g. `clusters tls-inspection
    /// my-cluster --enable --never-inspect pinned.example.com --ca-out ca.pem`.
    #[command(name = "tls-inspection")]
    TlsInspection {
        /// Cluster id or name.
        cluster: String,
        /// Turn inspection on (the first time, the cluster's CA is generated).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Turn inspection off (the CA is kept).
        #[arg(long)]
        disable: bool,
        /// A host pattern never inspected (`name` or `*.suffix`; repeat for more): replaces
        /// the list. Without it the list is kept.
        #[arg(
            long = "never-inspect",
            value_name = "PATTERN",
            conflicts_with = "clear_never_inspect"
        )]
        never_inspect: Vec<String>,
        /// Empty the never-inspect list.
        #[arg(long)]
        clear_never_inspect: bool,
        /// Write the CA certificate (PEM) to FILE.
        #[arg(long, value_name = "FILE")]
        ca_out: Option<std::path::PathBuf>,
    },
    /// Delete a cluster with its egress endpoints, egress rules and allowlist.
    Delete {
        /// Cluster id or name.
        cluster: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
enum Visibility {
    Public,
    Private,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
enum Provider {
    Aws,
    Gcp,
    Azure,
}

impl Provider {
    fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Gcp => "GCP",
            Provider::Azure => "AZURE",
        }
    }
}

fn parse_region(s: &str) -> Result<(String, u32), String> {
    let (name, nodes) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=NODES, e.g. us-east-1=3"))?;
    let nodes = nodes
        .parse::<u32>()
        .map_err(|_| format!("{nodes:?} in {s:?} is not a node count, e.g. us-east-1=3"))?;
    if name.is_empty() {
        return Err(format!("{s:?} has no region name, e.g. us-east-1=3"));
    }
    Ok((name.to_string(), nodes))
}

fn parse_role(s: &str) -> Result<(String, String), String> {
    let (purpose, template) = s.split_once('=').ok_or_else(|| {
        format!(
            "{s:?} is not PURPOSE=TEMPLATE, e.g. backup=arn:aws:iam::123456789012:role/crl-dr-store-user-{{cluster_id}}"
        )
    })?;
    Ok((purpose.to_string(), template.to_string()))
}

/// `{"roles": {purpose: {template, role_arn}}}` as PURPOSE, ROLE_ARN, TEMPLATE rows.
fn credential_roles_table(v: &Value) -> Result<String, Failure> {
    let mut t = Table::new(&["PURPOSE", "ROLE_ARN", "TEMPLATE"]);
    let roles = member(v, "roles")?
        .as_object()
        .ok_or_else(|| Failure::Response(format!("roles is not an object: {v}")))?;
    for (purpose, r) in roles {
        let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        t.row(vec![
            purpose.clone(),
            field("role_arn").to_string(),
            field("template").to_string(),
        ]);
    }
    Ok(t.render())
}

/// The TLS inspection setting as `FIELD VALUE` rows.
fn tls_inspection_table(v: &Value) -> Result<String, Failure> {
    let flag = |k: &str| -> Result<String, Failure> {
        Ok(member(v, k)?.as_bool().unwrap_or(false).to_string())
    };
    let mut t = Table::new(&["FIELD", "VALUE"]);
    t.row(vec!["enabled".into(), flag("enabled")?]);
    t.row(vec![
        "ca_fingerprint_sha256".into(),
        or_dash(
            member(v, "ca_fingerprint_sha256")?
                .as_str()
                .unwrap_or_default(),
        ),
    ]);
    t.row(vec!["propagating".into(), flag("propagating")?]);
    let never: Vec<&str> = member(v, "never_inspect")?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    t.row(vec![
        "never_inspect".into(),
        super::output::joined(&never, "-"),
    ]);
    Ok(t.render())
}

/// The fields of a cluster the tables show.
#[derive(Deserialize)]
pub(super) struct ClusterView {
    pub id: String,
    pub name: String,
    cloud_provider: String,
    state: String,
    pub egress_traffic_policy: String,
    network_visibility: String,
    regions: Vec<RegionView>,
    #[serde(default)]
    credential_roles: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RegionView {
    name: String,
    node_count: i64,
    #[serde(default)]
    egress_proxy_address: String,
    #[serde(default)]
    sql_ingress_address: String,
    #[serde(default)]
    ui_ingress_address: String,
    #[serde(default)]
    private_ingress_address: String,
    sql_dns: String,
}

fn clusters_table(clusters: &[Value]) -> Result<Table, Failure> {
    let mut t = Table::new(&[
        "NAME",
        "PROVIDER",
        "REGIONS",
        "STATE",
        "EGRESS_POLICY",
        "VISIBILITY",
        "ID",
    ]);
    for c in clusters {
        let c: ClusterView = view(c, "cluster")?;
        let regions = c
            .regions
            .iter()
            .map(|r| format!("{}={}", r.name, r.node_count))
            .collect::<Vec<_>>()
            .join(",");
        t.row(vec![
            c.name,
            c.cloud_provider,
            regions,
            c.state,
            c.egress_traffic_policy,
            c.network_visibility,
            c.id,
        ]);
    }
    Ok(t)
}

/// One cluster, then its regions.
fn cluster_detail(cluster: &Value) -> Result<String, Failure> {
    let c: ClusterView = view(cluster, "cluster")?;
    let mut regions = Table::new(&[
        "REGION",
        "NODES",
        "EGRESS_PROXY",
        "SQL_INGRESS",
        "UI_INGRESS",
        "PRIVATE_INGRESS",
        "SQL_DNS",
    ]);
    for r in &c.regions {
        regions.row(vec![
            r.name.clone(),
            r.node_count.to_string(),
            or_dash(&r.egress_proxy_address),
            or_dash(&r.sql_ingress_address),
            or_dash(&r.ui_ingress_address),
            or_dash(&r.private_ingress_address),
            r.sql_dns.clone(),
        ]);
    }
    let mut out = format!(
        "{}\n{}",
        clusters_table(std::slice::from_ref(cluster))?.render(),
        regions.render()
    );
    if !c.credential_roles.is_empty() {
        let mut roles = Table::new(&["CREDENTIAL_ROLE", "ROLE_ARN"]);
        for (purpose, arn) in &c.credential_roles {
            roles.row(vec![purpose.clone(), arn.clone()]);
        }
        out = format!("{out}\n{}", roles.render());
    }
    Ok(out)
}

pub async fn run(args: ClustersArgs) -> Result<(), Failure> {
    let api = args.conn.connect()?;
    let output = args.conn.output;
    match args.cmd {
        ClustersCmd::Create {
            name,
            provider,
            regions,
            plan,
            restrict_egress,
            private,
        } => {
            let region_nodes: BTreeMap<String, u32> = regions.into_iter().collect();
            let mut dedicated = json!({ "region_nodes": region_nodes });
            if restrict_egress {
                dedicated["restrict_egress_traffic"] = json!(true);
            }
            if private {
                dedicated["network_visibility"] = json!("PRIVATE");
            }
            let mut body = json!({
                "name": name,
                "provider": provider.as_str(),
                "spec": { "dedicated": dedicated },
            });
            if let Some(plan) = plan {
                body["plan"] = json!(plan);
            }
            let cluster = api.post(&["clusters"], &body).await?;
            emit(output, &cluster, || cluster_detail(&cluster))
        }
        ClustersCmd::List {
            show_inactive,
            paging,
        } => {
            let query: &[(&str, &str)] = if show_inactive {
                &[("show_inactive", "true")]
            } else {
                &[]
            };
            let (clusters, _) = api
                .list(&["clusters"], "clusters", paging.page_size, query)
                .await?;
            emit_list(output, clusters, clusters_table)
        }
        ClustersCmd::Get { cluster } => {
            let id = api.cluster_id(&cluster).await?;
            let cluster = api.get(&["clusters", &id]).await?;
            emit(output, &cluster, || cluster_detail(&cluster))
        }
        ClustersCmd::Visibility {
            cluster,
            visibility,
        } => {
            let id = api.cluster_id(&cluster).await?;
            let v = match visibility {
                Visibility::Public => "PUBLIC",
                Visibility::Private => "PRIVATE",
            };
            let body = json!({"dedicated": {"network_visibility": v}});
            let cluster = api.patch(&["clusters", &id], &body).await?;
            emit(output, &cluster, || cluster_detail(&cluster))
        }
        ClustersCmd::CredentialRoles {
            cluster,
            set,
            unset,
            clear,
        } => {
            let id = api.cluster_id(&cluster).await?;
            let path = ["clusters", id.as_str(), "credential-roles"];
            let current = api.get(&path).await?;
            if set.is_empty() && unset.is_empty() && !clear {
                return emit(output, &current, || credential_roles_table(&current));
            }
            let mut roles = Map::new();
            if !clear {
                for (purpose, r) in member(&current, "roles")?.as_object().into_iter().flatten() {
                    if let Some(t) = r.get("template") {
                        roles.insert(purpose.clone(), t.clone());
                    }
                }
            }
            for purpose in &unset {
                roles.remove(purpose);
            }
            for (purpose, template) in set {
                roles.insert(purpose, template.into());
            }
            let v = api.put(&path, &json!({ "roles": roles })).await?;
            emit(output, &v, || credential_roles_table(&v))
        }
        ClustersCmd::TlsInspection {
            cluster,
            enable,
            disable,
            never_inspect,
            clear_never_inspect,
            ca_out,
        } => {
            let id = api.cluster_id(&cluster).await?;
            let path = ["clusters", id.as_str(), "networking", "tls-inspection"];
            let mut v = api.get(&path).await?;
            if enable || disable || !never_inspect.is_empty() || clear_never_inspect {
                let enabled = if enable || disable {
                    enable
                } else {
                    member(&v, "enabled")?.as_bool().unwrap_or(false)
                };
                let list = if clear_never_inspect || !never_inspect.is_empty() {
                    json!(never_inspect)
                } else {
                    member(&v, "never_inspect")?.clone()
                };
                v = api
                    .put(&path, &json!({"enabled": enabled, "never_inspect": list}))
                    .await?;
            }
            if let Some(file) = ca_out {
                let pem = member(&v, "ca_certificate")?.as_str().unwrap_or_default();
                if pem.is_empty() {
                    return Err(Failure::Usage(format!(
                        "cluster {cluster} has no TLS inspection CA yet: inspection was never enabled (use --enable)"
                    )));
                }
                std::fs::write(&file, pem)
                    .map_err(|e| Failure::Usage(format!("--ca-out {}: {e}", file.display())))?;
            }
            emit(output, &v, || tls_inspection_table(&v))
        }
        ClustersCmd::Delete { cluster } => {
            let id = api.cluster_id(&cluster).await?;
            let cluster = api.delete(&["clusters", &id]).await?;
            emit(output, &cluster, || {
                Ok(clusters_table(std::slice::from_ref(&cluster))?.render())
            })
        }
    }
}

/// Output shared with `egress-policy get`.
pub(super) fn policy_table(output: Output, cluster: &Value) -> Result<(), Failure> {
    emit(output, cluster, || {
        let c: ClusterView = view(cluster, "cluster")?;
        let mut t = Table::new(&["CLUSTER", "EGRESS_POLICY", "ID"]);
        t.row(vec![c.name, c.egress_traffic_policy, c.id]);
        Ok(t.render())
    })
}
