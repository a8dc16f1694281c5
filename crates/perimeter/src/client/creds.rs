//! `perimeter creds check <uri>`: what an external storage or sink URI means (perimeter-creds):
//! the URI with its secrets redacted, scheme, auth mode, the role chain it assumes and the
//! destinations it implies. With `--cluster`, the cluster's egress-check verdict for each
//! destination, the egress rule that would allow one the policy denies, and the cluster's
//! functional role for the job's purpose (`--purpose`) in front of an AWS role chain.
//!
//! External ids are shown only as present or absent: AWS does not call them secret, but they
//! are what keeps a confused deputy from assuming the role, and nobody reading the output
//! needs them.

use std::io::Read;

use clap::{Args, Subcommand};
use perimeter_creds::{Destination, ExternalUri, Host, Purpose, parse, redact};
use serde_json::{Value, json};

use super::Connection;
use super::api::{Failure, member};
use super::output::{Table, emit, or_dash};

#[derive(Debug, Args)]
pub struct CredsArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: CredsCmd,
}

#[derive(Debug, Subcommand)]
enum CredsCmd {
    /// Validate a storage or sink URI (s3, gs, azure-blob, kafka, webhook-https) and show what
    /// it implies: redacted URI, auth mode, role chain, destinations. With --cluster, whether
    /// the cluster's egress policy allows each destination.
    Check(CheckArgs),
    /// Serve chained, refreshed AWS credentials to workloads on this machine over the AWS
    /// container-credentials protocol (AWS_CONTAINER_CREDENTIALS_FULL_URI and
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN): profiles, STS and the listener come from a TOML file.
    Serve(crate::creds_serve::CredsServeArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The URI, quoted. `-` reads it from stdin: command lines are visible to other users of
    /// the machine, and this one may hold keys.
    uri: String,
    /// Cluster id or name: ask its egress-check for every destination the URI implies, and
    /// put the cluster's functional role for the job's purpose in front of the role chain.
    #[arg(long)]
    cluster: Option<String>,
    /// The job's purpose, naming the cluster's functional role (`credential_roles`): default
    /// `changefeed` for kafka and webhook URIs, `backup` for storage.
    #[arg(long, requires = "cluster")]
    purpose: Option<String>,
}

pub async fn run(args: CredsArgs) -> Result<(), Failure> {
    match args.cmd {
        CredsCmd::Check(check) => run_check(&args.conn, check).await,
        CredsCmd::Serve(serve) => crate::creds_serve::run(serve)
            .await
            .map_err(|e| Failure::Invalid(format!("{e:#}"))),
    }
}

async fn run_check(conn: &Connection, args: CheckArgs) -> Result<(), Failure> {
    let raw = if args.uri == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::Usage(format!("cannot read the URI from stdin: {e}")))?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        args.uri
    };
    let shown = redact(&raw);
    let uri = parse(&raw).map_err(|e| Failure::Invalid(format!("{e}\n  uri: {shown}")))?;
    let destinations = uri.destinations();
    let mut verdicts = Vec::new();
    let mut cluster_name = String::new();
    let mut functional = None;
    if let Some(cluster) = &args.cluster {
        let api = conn.connect()?;
        let id = api.cluster_id(cluster).await?;
        cluster_name = cluster.clone();
        let purpose = args.purpose.clone().unwrap_or_else(|| {
            match uri {
                ExternalUri::Kafka(_) | ExternalUri::Webhook(_) => "changefeed",
                _ => "backup",
            }
            .to_string()
        });
        let doc = api.get(&["clusters", &id]).await?;
        if let Some(arn) = doc
            .get("credential_roles")
            .and_then(|r| r.get(&purpose))
            .and_then(Value::as_str)
            && assumes_aws_roles(&uri)
        {
            functional = Some((purpose, arn.to_string()));
        }
        for d in &destinations {
            let body = json!({"destination": d.host.as_check_destination(), "port": d.port});
            let answer = api
                .post(&["clusters", &id, "networking", "egress-check"], &body)
                .await?;
            verdicts.push(answer);
        }
    }
    let mut document = document(&uri, &shown, &destinations, &verdicts, &cluster_name)?;
    if let Some((purpose, arn)) = functional
        && let Some(chain) = document["role_chain"].as_array_mut()
    {
        chain.insert(
            0,
            json!({"principal": arn, "external_id": "absent", "functional_role": purpose}),
        );
    }
    for w in uri.warnings() {
        super::note(&format!("warning: {w}"));
    }
    emit(conn.output, &document, || table(&document))
}

/// Whether the URI's credentials come from AWS roles, which a cluster's functional role (an
/// IAM role) can head.
fn assumes_aws_roles(uri: &ExternalUri) -> bool {
    match uri {
        ExternalUri::S3(_) => true,
        ExternalUri::Kafka(k) => matches!(k.sasl, Some(perimeter_creds::Sasl::AwsMskIam { .. })),
        _ => false,
    }
}

/// The JSON answer: everything the table shows.
fn document(
    uri: &ExternalUri,
    shown: &str,
    destinations: &[Destination],
    verdicts: &[Value],
    cluster: &str,
) -> Result<Value, Failure> {
    let chain: Vec<Value> = uri
        .role_chain()
        .iter()
        .map(|link| {
            json!({
                "principal": link.principal,
                "external_id": if link.external_id.is_some() { "present" } else { "absent" },
            })
        })
        .collect();
    let mut dests = Vec::new();
    for (i, d) in destinations.iter().enumerate() {
        let mut entry = json!({
            "host": d.host.as_check_destination(),
            "port": d.port,
            "purpose": d.purpose.as_str(),
        });
        if let Some(v) = verdicts.get(i) {
            let allowed = member(v, "allowed")?.as_bool().unwrap_or(false);
            let default_deny = member(v, "would_allow_under_default_deny")?
                .as_bool()
                .unwrap_or(false);
            let reason = member(v, "reason")?
                .as_str()
                .unwrap_or_default()
                .to_string();
            entry["egress"] = json!({
                "allowed": allowed,
                "would_allow_under_default_deny": default_deny,
                "reason": reason,
                "rule": v.get("rule").and_then(|r| r.get("name")).cloned().unwrap_or(Value::Null),
                "snapshot_version": v.get("snapshot_version").cloned().unwrap_or(Value::Null),
            });
            if !default_deny && reason != "special_address" {
                entry["egress"]["rule_to_add"] = json!(rule_to_add(cluster, d));
            }
        }
        dests.push(entry);
    }
    Ok(json!({
        "uri": shown,
        "scheme": uri.scheme(),
        "auth": uri.auth_mode(),
        "role_chain": chain,
        "destinations": dests,
        "warnings": uri.warnings(),
    }))
}

/// The `perimeter egress-rules add` command that allows `d`: an FQDN rule for a name, a
/// single-address CIDR rule for an IP literal (FQDN rules never match those).
fn rule_to_add(cluster: &str, d: &Destination) -> String {
    let name = format!(
        "{}-{}",
        d.host.as_check_destination().replace(':', "-"),
        d.port
    );
    let (kind, dest) = match &d.host {
        Host::Name(n) => ("FQDN", n.clone()),
        Host::V4(a) => ("CIDR", format!("{a}/32")),
        Host::V6(a) => ("CIDR", format!("{a}/128")),
    };
    let purpose = match d.purpose {
        Purpose::Storage => "storage",
        Purpose::Broker => "kafka broker",
        Purpose::Webhook => "webhook",
        Purpose::AssumeRole => "sts for the role chain",
        Purpose::Impersonation => "service account impersonation",
        Purpose::Token => "token endpoint",
    };
    format!(
        "perimeter egress-rules add {cluster} --name {name} --type {kind} --destination {dest} \
         --port {} --description '{purpose} (perimeter creds check)'",
        d.port
    )
}

fn table(doc: &Value) -> Result<String, Failure> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = String::new();
    out.push_str(&format!("uri:     {}\n", text(doc, "uri")));
    out.push_str(&format!("scheme:  {}\n", text(doc, "scheme")));
    out.push_str(&format!("auth:    {}\n", text(doc, "auth")));
    let chain = doc["role_chain"].as_array().cloned().unwrap_or_default();
    if chain.is_empty() {
        out.push_str("roles:   none\n");
    } else {
        out.push_str("roles:   assumed in this order\n");
        for (i, link) in chain.iter().enumerate() {
            let functional = match link.get("functional_role").and_then(Value::as_str) {
                Some(purpose) => format!(", the cluster's functional role for {purpose}"),
                None => String::new(),
            };
            out.push_str(&format!(
                "  {}. {}  (external id: {}{functional})\n",
                i + 1,
                text(link, "principal"),
                text(link, "external_id")
            ));
        }
    }
    out.push('\n');
    let dests = doc["destinations"].as_array().cloned().unwrap_or_default();
    let checked = dests.iter().any(|d| d.get("egress").is_some());
    let mut t = if checked {
        Table::new(&[
            "DESTINATION",
            "PURPOSE",
            "ALLOWED",
            "DEFAULT-DENY",
            "RULE",
            "REASON",
        ])
    } else {
        Table::new(&["DESTINATION", "PURPOSE"])
    };
    let mut to_add = Vec::new();
    for d in &dests {
        let host = text(d, "host");
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let mut row = vec![format!("{host}:{}", d["port"]), text(d, "purpose")];
        if let Some(e) = d.get("egress") {
            row.push(e["allowed"].to_string());
            row.push(e["would_allow_under_default_deny"].to_string());
            row.push(or_dash(e["rule"].as_str().unwrap_or("")));
            row.push(text(e, "reason"));
            if let Some(cmd) = e.get("rule_to_add").and_then(Value::as_str) {
                to_add.push(cmd.to_string());
            }
        }
        t.row(row);
    }
    out.push_str(&t.render());
    if !to_add.is_empty() {
        out.push_str("\nto allow what the policy does not:\n");
        for cmd in to_add {
            out.push_str(&format!("  {cmd}\n"));
        }
    }
    Ok(out)
}
