//! Client subcommands over the REST API: `clusters`, `egress-rules`, `egress-policy`,
//! `egress-endpoints`, `endpoint-services`, `allowlist`, `check`, `creds`, `gateways` and
//! `workload`. Each sends the API's own JSON shapes (API.md) and prints an aligned table or the
//! API's JSON.
//!
//! Exit status: 0 on success; 1 when the API (or a name lookup) refused the request, or `creds
//! check` refused the URI; 2 when the command line is wrong or the API could not be reached.

mod allowlist;
mod api;
mod check;
mod clusters;
mod creds;
mod egress_endpoints;
mod egress_policy;
mod egress_rules;
mod endpoint_services;
mod gateways;
mod output;
mod private_endpoints;
mod workload;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use self::api::{Api, Failure};

/// Where `perimeter serve` writes the bootstrap admin key when started with the default data dir.
const ADMIN_KEY_FILE: &str = "./perimeter-data/admin-api-key";

const EXIT_STATUS_HELP: &str = "Exit status: 0 on success, 1 when the API refused the request, \
     2 on a command-line error or when the API could not be reached.";

const CREDS_EXIT_STATUS_HELP: &str = "Exit status: 0 when the URI is valid (whatever the egress \
     verdicts), 1 when it is not or the API refused the request, 2 on a command-line error or \
     when the API could not be reached.";

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create, list, show and delete clusters; change their visibility and functional roles.
    #[command(after_help = EXIT_STATUS_HELP)]
    Clusters(clusters::ClustersArgs),
    /// Add, list, show, edit and delete a cluster's egress rules.
    #[command(after_help = EXIT_STATUS_HELP)]
    EgressRules(egress_rules::EgressRulesArgs),
    /// Show or set a cluster's egress traffic policy (default-deny, allow-all, report-only).
    #[command(after_help = EXIT_STATUS_HELP)]
    EgressPolicy(egress_policy::EgressPolicyArgs),
    /// Create, list, show, name and delete a cluster's egress private endpoints.
    #[command(after_help = EXIT_STATUS_HELP)]
    EgressEndpoints(egress_endpoints::EgressEndpointsArgs),
    /// Register, list, show and delete endpoint services (the `local` provider's service side),
    /// and accept or reject the endpoints that connect to them.
    #[command(after_help = EXIT_STATUS_HELP)]
    EndpointServices(endpoint_services::EndpointServicesArgs),
    /// Add, list, update and delete entries of a cluster's IP allowlist.
    #[command(after_help = EXIT_STATUS_HELP)]
    Allowlist(allowlist::AllowlistArgs),
    /// What the cluster's gateways would decide for a destination (egress-check). A name is
    /// resolved as the gateways resolve it and judged per address, each listed with its verdict.
    #[command(after_help = EXIT_STATUS_HELP)]
    Check(check::CheckArgs),
    /// Storage and sink URIs (s3, gs, azure-blob, kafka, webhook-https): `creds check`
    /// validates one, redacts its secrets and lists the destinations it implies.
    #[command(after_help = CREDS_EXIT_STATUS_HELP)]
    Creds(creds::CredsArgs),
    /// Register, list and deregister the gateways that enforce a cluster's policy.
    #[command(after_help = EXIT_STATUS_HELP)]
    Gateways(gateways::GatewaysArgs),
    /// The cluster's private endpoint services, the endpoints connected to them and the owners
    /// trusted to connect (the ingress side of private connectivity).
    #[command(after_help = EXIT_STATUS_HELP)]
    PrivateEndpoints(private_endpoints::PrivateEndpointsArgs),
    /// Show or set where a cluster's workloads (its SQL and UI) listen in each region: what the
    /// public ingress listeners forward admitted connections to (PLATFORM_OPERATOR).
    #[command(after_help = EXIT_STATUS_HELP)]
    Workload(workload::WorkloadArgs),
}

/// How to reach the API; accepted by every client command, before or after its subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
pub struct Connection {
    /// Base URL of the Perimeter API. This build speaks plain http:// only; https:// needs a
    /// later build with TLS support.
    #[arg(
        long,
        global = true,
        env = "PERIMETER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// API key secret, sent as `Authorization: Bearer` and never printed. Prefer the variable:
    /// command lines are visible to other users. When neither is set and
    /// ./perimeter-data/admin-api-key exists (the admin key `perimeter serve` writes on first
    /// start with the default data dir), that file is read.
    #[arg(long, global = true, env = "PERIMETER_API_KEY", hide_env_values = true)]
    api_key: Option<Secret>,
    /// Output format: an aligned table, or the API's JSON (lists as one JSON array).
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// An API key secret: its `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(String);

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.trim().to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Page size of list requests: each list follows `pagination.next_page` to the end, so this only
/// sets how many rows come per request.
#[derive(Debug, Args)]
pub struct Paging {
    /// Rows fetched per request (1-500); the list always follows every page to the end.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=500))]
    page_size: u32,
}

impl Connection {
    /// The API key: the flag or variable, else the bootstrap admin key file.
    fn api_key(&self) -> Result<Secret, Failure> {
        if let Some(key) = self.api_key.as_ref().filter(|k| !k.0.is_empty()) {
            return Ok(key.clone());
        }
        let path = Path::new(ADMIN_KEY_FILE);
        match std::fs::read_to_string(path) {
            Ok(s) if !s.trim().is_empty() => Ok(Secret(s.trim().to_string())),
            Ok(_) => Err(Failure::Usage(format!(
                "{ADMIN_KEY_FILE} is empty; pass --api-key or set PERIMETER_API_KEY"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::Usage(format!(
                "no API key: pass --api-key or set PERIMETER_API_KEY (or run where {ADMIN_KEY_FILE} exists)"
            ))),
            Err(e) => Err(Failure::Usage(format!("cannot read {ADMIN_KEY_FILE}: {e}"))),
        }
    }

    fn connect(&self) -> Result<Api, Failure> {
        Api::new(&self.url, &self.api_key()?)
    }
}

/// The cluster's functional role for `purpose` (its `credential_roles`), for `creds serve`:
/// `None` when it has none. Errors are the client's messages (`error: ...`), one line.
pub async fn cluster_functional_role(
    url: &str,
    api_key: &str,
    cluster: &str,
    purpose: &str,
) -> std::result::Result<Option<String>, String> {
    let flat = |f: api::Failure| {
        f.to_string()
            .trim()
            .trim_start_matches("error: ")
            .to_string()
    };
    let api = api::Api::new(url, &Secret(api_key.trim().to_string())).map_err(flat)?;
    let id = api.cluster_id(cluster).await.map_err(flat)?;
    let doc = api.get(&["clusters", &id]).await.map_err(flat)?;
    Ok(doc
        .get("credential_roles")
        .and_then(|r| r.get(purpose))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string))
}

pub async fn run(cmd: ClientCommand) -> Result<ExitCode> {
    let outcome = match cmd {
        ClientCommand::Clusters(a) => clusters::run(a).await,
        ClientCommand::EgressRules(a) => egress_rules::run(a).await,
        ClientCommand::EgressPolicy(a) => egress_policy::run(a).await,
        ClientCommand::EgressEndpoints(a) => egress_endpoints::run(a).await,
        ClientCommand::EndpointServices(a) => endpoint_services::run(a).await,
        ClientCommand::Allowlist(a) => allowlist::run(a).await,
        ClientCommand::Check(a) => check::run(a).await,
        ClientCommand::Creds(a) => creds::run(a).await,
        ClientCommand::Gateways(a) => gateways::run(a).await,
        ClientCommand::Workload(a) => workload::run(a).await,
        ClientCommand::PrivateEndpoints(a) => private_endpoints::run(a).await,
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(failure) => {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{failure}");
            Ok(ExitCode::from(failure.exit_code()))
        }
    }
}

/// Print the API's `warnings` (advice that is not an error) to stderr.
fn print_warnings(body: &serde_json::Value) {
    let Some(warnings) = body.get("warnings").and_then(|w| w.as_array()) else {
        return;
    };
    let mut err = std::io::stderr().lock();
    for w in warnings {
        let text = w.as_str().map_or_else(|| w.to_string(), str::to_string);
        let _ = writeln!(err, "warning: {text}");
    }
}

/// A note for people (stderr, so that stdout stays the table or the JSON).
fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
