//! `perimeter creds serve --config creds.toml`: the credential endpoint (perimeter-creds'
//! broker) for workloads on this machine. Wiring only: the config file, the token file, the
//! listener and the log.
//!
//! ```toml
//! listen = "127.0.0.1:9911"      # the default; another address needs allow_remote = true
//! token_file = "creds-token"     # made (mode 0600) with a random token when it does not exist
//!
//! [sts]                          # all optional
//! endpoint_url = "http://127.0.0.1:5000"   # an AWS-compatible server instead of AWS's STS
//! region = "us-east-1"                     # for chains whose URI names no AWS_REGION
//! proxy = "http://127.0.0.1:3128"          # every STS call through this HTTP proxy
//! session_name = "perimeter"
//! duration_seconds = 3600
//!
//! [control_plane]                # needed by profiles that name a cluster
//! url = "http://127.0.0.1:8080"
//! api_key_file = "perimeter-data/admin-api-key"
//!
//! [profiles.backup]
//! uri = "s3://backups?AUTH=implicit&ASSUME_ROLE=arn:aws:iam::123456789012:role/backup"
//! # The first hop, optional: a role ARN, or the cluster's functional role for a purpose.
//! functional_role = "arn:aws:iam::999999999999:role/crl-dr-store-user-..."
//! # cluster = "orders-db"         # instead of functional_role: read from the control plane
//! # purpose = "backup"            # the default
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use perimeter_creds::broker::{
    CredentialCache, Endpoint, RefreshPolicy, RoleChain, Sts, StsSettings, SystemClock, serve,
};
use perimeter_creds::{ExternalUri, parse};
use serde::Deserialize;

use crate::process::{LogFormat, init_tracing, shutdown_signal};

#[derive(Debug, Args)]
pub struct CredsServeArgs {
    /// The TOML configuration: listener, token file, STS settings, profiles.
    #[arg(long)]
    config: PathBuf,
    /// Overrides the file's `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Overrides the file's `token_file`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PERIMETER_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    #[serde(default)]
    allow_remote: bool,
    token_file: Option<PathBuf>,
    #[serde(default)]
    sts: StsFile,
    control_plane: Option<ControlPlaneFile>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlPlaneFile {
    url: String,
    api_key_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StsFile {
    endpoint_url: Option<String>,
    region: Option<String>,
    proxy: Option<String>,
    session_name: Option<String>,
    duration_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    uri: String,
    functional_role: Option<String>,
    cluster: Option<String>,
    purpose: Option<String>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:9911";

/// Read and check the file. Messages name the field at fault and never quote a value from the
/// file: a profile's URI may hold keys.
fn load(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str::<FileConfig>(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match line {
            Some(l) => anyhow::anyhow!("{} line {l}: {}", path.display(), e.message()),
            None => anyhow::anyhow!("{}: {}", path.display(), e.message()),
        }
    })
}

/// A profile's role chain: its URI's, with the functional role in front (the profile's own, or
/// `functional`, its cluster's as the control plane answered).
fn profile_chain(name: &str, p: &ProfileFile, functional: Option<&str>) -> Result<RoleChain> {
    let functional = functional.or(p.functional_role.as_deref());
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("profiles: a profile name must be 1-64 letters, digits, '-' or '_'");
    }
    let uri = parse(&p.uri).map_err(|e| anyhow::anyhow!("profiles.{name}.uri: {e}"))?;
    let ExternalUri::S3(s3) = &uri else {
        bail!(
            "profiles.{name}.uri: a {} URI; the endpoint serves AWS credentials, from s3:// URIs",
            uri.scheme()
        );
    };
    let mut chain = RoleChain::of_s3(s3);
    if p.functional_role.is_some() && p.cluster.is_some() {
        bail!(
            "profiles.{name}: give functional_role or cluster, not both (a cluster's functional \
             role is read from the control plane)"
        );
    }
    if p.purpose.is_some() && p.cluster.is_none() {
        bail!("profiles.{name}.purpose: names a cluster's functional role; give cluster too");
    }
    if let Some(role) = functional {
        chain
            .prepend("functional_role", role)
            .map_err(|e| anyhow::anyhow!("profiles.{name}.{e}"))?;
    }
    if chain.roles.is_empty() {
        bail!(
            "profiles.{name}: assumes no role (give ASSUME_ROLE in the uri or a functional_role); \
             the endpoint hands out short-lived role credentials only, never base credentials"
        );
    }
    Ok(chain)
}

/// The functional role of a profile's cluster, read from the control plane (once, at start).
async fn cluster_role(
    file: &FileConfig,
    name: &str,
    cluster: &str,
    purpose: Option<&str>,
) -> Result<String> {
    let purpose = purpose.unwrap_or("backup");
    let Some(cp) = &file.control_plane else {
        bail!("profiles.{name}.cluster: needs a [control_plane] table with url and api_key_file");
    };
    let key = std::fs::read_to_string(&cp.api_key_file).with_context(|| {
        format!(
            "control_plane.api_key_file: cannot read {}",
            cp.api_key_file.display()
        )
    })?;
    match crate::client::cluster_functional_role(&cp.url, &key, cluster, purpose).await {
        Ok(Some(arn)) => Ok(arn),
        Ok(None) => bail!(
            "profiles.{name}.cluster: cluster {cluster} has no functional role for {purpose} \
             (set one: perimeter clusters credential-roles {cluster} --set '{purpose}=<role ARN \
             template>')"
        ),
        Err(e) => bail!("profiles.{name}.cluster: {e}"),
    }
}

/// The token callers must send: read from the file, or made and written there (mode 0600).
fn token(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let t = t.trim().to_string();
            if t.len() < 32 {
                bail!(
                    "token_file {}: the token must be at least 32 characters",
                    path.display()
                );
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            let mut f = std::fs::OpenOptions::new();
            f.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
            let mut file = f
                .open(path)
                .with_context(|| format!("cannot create token_file {}", path.display()))?;
            file.write_all(t.as_bytes())
                .with_context(|| format!("cannot write token_file {}", path.display()))?;
            Ok(t)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read token_file {}", path.display())),
    }
}

pub async fn run(args: CredsServeArgs) -> Result<()> {
    let file = load(&args.config)?;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address"));
    if !listen.ip().is_loopback() && !file.allow_remote {
        bail!(
            "listen: {listen} is not a loopback address; set allow_remote = true to serve \
             credentials beyond this machine"
        );
    }
    if file.profiles.is_empty() {
        bail!("profiles: none configured; add a [profiles.<name>] table with a uri");
    }
    let mut profiles = BTreeMap::new();
    for (name, p) in &file.profiles {
        // Check the profile alone first, so that a bad one fails before any request.
        profile_chain(name, p, None)?;
        let functional = match &p.cluster {
            Some(cluster) => Some(cluster_role(&file, name, cluster, p.purpose.as_deref()).await?),
            None => None,
        };
        profiles.insert(name.clone(), profile_chain(name, p, functional.as_deref())?);
    }
    let token_file = args
        .token_file
        .or(file.token_file)
        .unwrap_or_else(|| PathBuf::from("creds-token"));
    let token = token(&token_file)?;
    let defaults = StsSettings::default();
    let settings = StsSettings {
        endpoint_url: file.sts.endpoint_url,
        region: file.sts.region.unwrap_or(defaults.region),
        proxy: file.sts.proxy,
        session_name: file.sts.session_name.unwrap_or(defaults.session_name),
        duration: file
            .sts
            .duration_seconds
            .map_or(defaults.duration, Duration::from_secs),
    };
    let _log = init_tracing(args.log_format)?;
    let sts = Sts::new(settings).await.context("sts")?;
    let cache = CredentialCache::new(
        Arc::new(sts),
        Arc::new(SystemClock),
        RefreshPolicy::default(),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "credential endpoint listening on http://{addr}")?;
    writeln!(
        out,
        "  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={}",
        token_file.display()
    )?;
    for (name, chain) in &profiles {
        writeln!(out, "  profile {name}: {chain}")?;
        writeln!(
            out,
            "    AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{addr}/v1/credentials/{name}"
        )?;
    }
    drop(out);
    // Assume every profile once now, so that a broken chain shows in the log at start rather
    // than at a job's first request.
    for (name, chain) in &profiles {
        let (cache, name, chain) = (cache.clone(), name.clone(), chain.clone());
        tokio::spawn(async move {
            match cache.get(&chain).await {
                Ok(c) => {
                    tracing::info!(profile = %name, role = %c.assumed_role_arn, "profile ready")
                }
                Err(e) => tracing::warn!(profile = %name, error = %e, "profile not ready"),
            }
        });
    }
    let endpoint = Arc::new(Endpoint::new(cache, profiles, token));
    serve(listener, endpoint, shutdown_signal())
        .await
        .context("credential endpoint")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(uri: &str, role: Option<&str>) -> ProfileFile {
        ProfileFile {
            uri: uri.into(),
            functional_role: role.map(str::to_string),
            cluster: None,
            purpose: None,
        }
    }

    #[test]
    fn profiles_need_an_s3_uri_and_a_role_and_errors_name_the_field() {
        let ok = "s3://bucket?AUTH=implicit&ASSUME_ROLE=arn:aws:iam::123456789012:role/backup";
        let c = profile_chain(
            "backup",
            &profile(ok, Some("arn:aws:iam::999999999999:role/crl")),
            None,
        )
        .expect("valid");
        assert_eq!(
            c.to_string(),
            "implicit -> arn:aws:iam::999999999999:role/crl -> arn:aws:iam::123456789012:role/backup"
        );
        let secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY";
        for (name, p, want) in [
            ("bad name", profile(ok, None), "profiles: a profile name"),
            (
                "kafka",
                profile("kafka://broker:9092", None),
                "profiles.kafka.uri: a kafka URI",
            ),
            (
                "keys",
                profile(
                    &format!(
                        "s3://bucket?AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE&AWS_SECRET_ACCESS_KEY={secret}"
                    ),
                    None,
                ),
                "profiles.keys: assumes no role",
            ),
            (
                "role",
                profile(ok, Some("arn:aws:iam::1:role/x")),
                "profiles.role.functional_role:",
            ),
            (
                "both",
                ProfileFile {
                    cluster: Some("orders-db".into()),
                    ..profile(ok, Some("arn:aws:iam::999999999999:role/crl"))
                },
                "profiles.both: give functional_role or cluster, not both",
            ),
            (
                "purpose",
                ProfileFile {
                    purpose: Some("backup".into()),
                    ..profile(ok, None)
                },
                "profiles.purpose.purpose: names a cluster's functional role",
            ),
            (
                "typo",
                profile(
                    &format!("s3://bucket?AUTH=implicit&AWS_SECRET_ACCES_KEY={secret}"),
                    None,
                ),
                "profiles.typo.uri: ",
            ),
        ] {
            let e = profile_chain(name, &p, None).expect_err(name).to_string();
            assert!(e.starts_with(want), "{name}: {e}");
            assert!(!e.contains(secret), "{name}: {e}");
        }
    }

    #[test]
    fn a_config_error_names_the_line_not_the_secret() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("creds.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\n[profiles.a]\nuri = \"s3://b?AWS_SECRET_ACCESS_KEY=hunter2-secret\nfunctional_role = 1\n",
        )
        .expect("write");
        let e = load(&path).expect_err("bad toml").to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
