//! Name resolution, performed by the gateway alone (DESIGN "Resolution"): the client never
//! chooses the address the gateway dials.
//!
//! A [`Resolver`] asks the configured DNS servers (or those of the system's `resolv.conf`) for
//! A and AAAA records, after a static hosts file that wins over DNS. Failures say whether the
//! name does not exist, the servers failed, or they did not answer in time, so the proxy can
//! answer 502 or 504; a DNS failure is never a policy decision. The address guard that judges
//! the answers lives with the policy decision, not here. Nothing else in the gateway may
//! resolve names (`clippy.toml` disallows `tokio::net::lookup_host` and `to_socket_addrs`).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts,
    ResolverConfig as HickoryConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use perimeter_policy::{Hostname, parse_ip_literal};

/// How the gateway resolves names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// DNS servers, asked over UDP (TCP on truncation). Empty: the servers of the system's
    /// `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// A hosts file (`/etc/hosts` syntax) whose names win over DNS. Read once, at
    /// [`Resolver::new`].
    pub hosts_file: Option<PathBuf>,
    /// Deadline for one [`Resolver::resolve`] call, A and AAAA together.
    pub timeout: Duration,
}

/// Why a name could not be resolved. The proxy answers 502 for all but [`DnsError::Timeout`],
/// which is 504.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN).
    #[error("{name} does not exist (NXDOMAIN)")]
    NotFound { name: Hostname },
    /// The name exists but has no A or AAAA records.
    #[error("{name} has no A or AAAA records")]
    NoRecords { name: Hostname },
    /// No answer arrived before the deadline.
    #[error("no DNS answer for {name} in time")]
    Timeout { name: Hostname },
    /// The servers answered with an error (SERVFAIL, REFUSED ...), could not be reached, or
    /// sent something unusable.
    #[error("DNS servers failed for {name}: {detail}")]
    ServerFailure { name: Hostname, detail: String },
}

impl DnsError {
    /// Whether the servers did not answer in time (the proxy answers 504, not 502).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// How it failed.
    pub fn failure(&self) -> DnsFailure {
        match self {
            Self::NotFound { .. } => DnsFailure::NxDomain,
            Self::NoRecords { .. } => DnsFailure::NoRecords,
            Self::Timeout { .. } => DnsFailure::Timeout,
            Self::ServerFailure { .. } => DnsFailure::ServerFailure,
        }
    }

    /// Stable reason name, as refusals (`x-perimeter-error`) and decision events carry it.
    pub fn reason(&self) -> &'static str {
        self.failure().as_str()
    }
}

/// How name resolution failed, without the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFailure {
    Timeout,
    NxDomain,
    NoRecords,
    ServerFailure,
}

impl DnsFailure {
    /// Stable reason name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NxDomain => "dns_nxdomain",
            Self::NoRecords => "dns_no_records",
            Self::Timeout => "dns_timeout",
            Self::ServerFailure => "dns_failure",
        }
    }
}

/// Why a [`Resolver`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverSetupError {
    #[error("reading hosts file {path}: {source}")]
    HostsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the system DNS configuration: {0}")]
    SystemConfig(String),
    #[error("building the DNS resolver: {0}")]
    Build(String),
}

/// The gateway's resolver. Cheap to clone (shares its cache).
#[derive(Clone)]
pub struct Resolver {
    dns: TokioResolver,
    hosts: HostsFile,
    timeout: Duration,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("hosts", &self.hosts.entries.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Build a resolver. Reads the hosts file (and `/etc/resolv.conf` when `servers` is
    /// empty) now. The system's own `/etc/hosts` is never consulted.
    pub fn new(config: ResolverConfig) -> Result<Self, ResolverSetupError> {
        let hosts = match &config.hosts_file {
            Some(path) => HostsFile::read(path)?,
            None => HostsFile::default(),
        };
        let (dns_config, mut opts) = if config.servers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| ResolverSetupError::SystemConfig(e.to_string()))?
        } else {
            let servers = config
                .servers
                .iter()
                .map(|addr| {
                    let connection = |protocol| {
                        let mut c = ConnectionConfig::new(protocol);
                        c.port = addr.port();
                        c
                    };
                    NameServerConfig::new(
                        addr.ip(),
                        true,
                        vec![
                            connection(ProtocolConfig::Udp),
                            connection(ProtocolConfig::Tcp),
                        ],
                    )
                })
                .collect();
            (
                HickoryConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        // Two attempts fit in the overall deadline that `resolve` enforces.
        opts.timeout = (config.timeout / 2).max(Duration::from_millis(50));
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        let dns = TokioResolver::builder_with_config(dns_config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| ResolverSetupError::Build(e.to_string()))?;
        Ok(Self {
            dns,
            hosts,
            timeout: config.timeout,
        })
    }

    /// The addresses of `name`: from the hosts file if it names it, else from DNS (A answers,
    /// then AAAA answers, each in the order received), without duplicates. Succeeds when
    /// either query yields addresses.
    pub async fn resolve(&self, name: &Hostname) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(addrs) = self.hosts.entries.get(name) {
            return Ok(addrs.clone());
        }
        let fqdn = Name::from_ascii(format!("{name}.")).map_err(|e| DnsError::ServerFailure {
            name: name.clone(),
            detail: format!("name not usable in DNS: {e}"),
        })?;
        let lookups = async {
            tokio::join!(
                self.dns.lookup(fqdn.clone(), RecordType::A),
                self.dns.lookup(fqdn.clone(), RecordType::AAAA),
            )
        };
        let Ok((v4, v6)) = tokio::time::timeout(self.timeout, lookups).await else {
            return Err(DnsError::Timeout { name: name.clone() });
        };
        let mut addrs = Vec::new();
        let mut failures = Vec::new();
        for result in [v4, v6] {
            match result {
                Ok(lookup) => {
                    for record in lookup.answers() {
                        let ip = match &record.data {
                            RData::A(a) => IpAddr::V4(a.0),
                            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                            _ => continue,
                        };
                        if !addrs.contains(&ip) {
                            addrs.push(ip);
                        }
                    }
                }
                Err(e) => failures.push(classify(name, &e)),
            }
        }
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        // Most telling failure first: a timeout or server failure says nothing about whether
        // the name exists.
        failures.sort_by_key(|e| match e {
            DnsError::Timeout { .. } => 0,
            DnsError::ServerFailure { .. } => 1,
            DnsError::NotFound { .. } => 2,
            DnsError::NoRecords { .. } => 3,
        });
        Err(failures
            .into_iter()
            .next()
            .unwrap_or(DnsError::NoRecords { name: name.clone() }))
    }
}

fn classify(name: &Hostname, e: &NetError) -> DnsError {
    let name = name.clone();
    if e.is_nx_domain() {
        DnsError::NotFound { name }
    } else if e.is_no_records_found() {
        DnsError::NoRecords { name }
    } else if matches!(e, NetError::Timeout) {
        DnsError::Timeout { name }
    } else {
        let detail = match e {
            NetError::Dns(hickory_resolver::net::DnsError::ResponseCode(code)) => {
                response_code_name(*code)
            }
            other => other.to_string(),
        };
        DnsError::ServerFailure { name, detail }
    }
}

fn response_code_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        other => other.to_string(),
    }
}

/// Static names from a hosts file: normalised name -> addresses in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsFile {
    entries: HashMap<Hostname, Vec<IpAddr>>,
}

impl HostsFile {
    /// Read and parse a hosts file.
    pub fn read(path: &Path) -> Result<Self, ResolverSetupError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ResolverSetupError::HostsFile {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self::parse(&text))
    }

    /// Parse `/etc/hosts` syntax: `address name [alias ...]`, `#` starts a comment. Lines
    /// whose address is not a canonical IP literal (a zone id, say) and names that are not
    /// valid hostnames (single labels such as `localhost`) are skipped and logged.
    pub fn parse(text: &str) -> Self {
        let mut entries: HashMap<Hostname, Vec<IpAddr>> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_ascii_whitespace();
            let Some(addr) = fields.next() else {
                continue;
            };
            let ip = match parse_ip_literal(addr) {
                Ok(ip) if !addr.starts_with('[') => ip,
                _ => {
                    tracing::warn!(line = n + 1, addr, "hosts file: skipping unusable address");
                    continue;
                }
            };
            for name in fields {
                match name.parse::<Hostname>() {
                    Ok(name) => {
                        let addrs = entries.entry(name).or_default();
                        if !addrs.contains(&ip) {
                            addrs.push(ip);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(line = n + 1, name, error = %e, "hosts file: skipping name");
                    }
                }
            }
        }
        Self { entries }
    }

    /// The addresses the file gives `name`.
    pub fn get(&self, name: &Hostname) -> Option<&[IpAddr]> {
        self.entries.get(name).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests;
