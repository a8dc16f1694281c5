//! The private endpoints of a snapshot: what their names route to (backends, exposed ports,
//! TLS server names, PROXY protocol), compiled from the document's `private_endpoints`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::CompileError;
use crate::document::{BackendDoc, EndpointDoc};
use crate::error::quote;
use crate::name_index::{NameIndex, wildcard_key};
use crate::{HostPattern, Hostname};

/// A private endpoint of the snapshot: where names routed to it go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    id: Arc<str>,
    region: Arc<str>,
    connection_id: Arc<str>,
    endpoint_address: Option<Hostname>,
    domain_names: Vec<HostPattern>,
    backends: Vec<Backend>,
    ports: Vec<u16>,
    proxy_protocol: bool,
    special_addresses: bool,
}

/// Where a backend listens: an address, or a name the gateway resolves (the service owner's
/// registration, not the client, chose it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendHost {
    Ip(IpAddr),
    Name(Hostname),
}

/// One backend of a private endpoint's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    host: BackendHost,
    port: u16,
    /// TLS server names routed to this backend; empty: any connection on its port.
    server_names: Vec<HostPattern>,
}

impl Backend {
    pub fn host(&self) -> &BackendHost {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn server_names(&self) -> &[HostPattern] {
        &self.server_names
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            BackendHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            BackendHost::Ip(ip) => write!(f, "{ip}:{}", self.port),
            BackendHost::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

impl Endpoint {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn id_arc(&self) -> &Arc<str> {
        &self.id
    }

    /// The cluster region whose gateways serve this endpoint.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint's connection id (`endpoint_connection_id`).
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// The endpoint's own DNS name, if it has one.
    pub fn endpoint_address(&self) -> Option<&Hostname> {
        self.endpoint_address.as_ref()
    }

    pub fn domain_names(&self) -> &[HostPattern] {
        &self.domain_names
    }

    /// Every backend of the endpoint's service.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Whether backend connections open with a PROXY protocol v2 header.
    pub fn proxy_protocol(&self) -> bool {
        self.proxy_protocol
    }

    /// Whether its backends may be special addresses ([`EndpointDoc::special_addresses`]).
    pub fn special_addresses(&self) -> bool {
        self.special_addresses
    }

    /// The backends that connections to `port` of the endpoint reach: every backend on an
    /// exposed port ([`EndpointDoc::ports`]), else those listening on `port` themselves.
    pub fn backends_on(&self, port: u16) -> impl Iterator<Item = &Backend> {
        let exposed = !self.ports.is_empty();
        let on_port = self.ports.contains(&port);
        self.backends
            .iter()
            .filter(move |b| if exposed { on_port } else { b.port == port })
    }

    /// The ports clients may use: the exposed ports, else the backends' own, sorted.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports = if self.ports.is_empty() {
            self.backends.iter().map(|b| b.port).collect()
        } else {
            self.ports.clone()
        };
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Whether connections to `port` are routed by their TLS server name: some backend on it
    /// names the server names it serves.
    pub fn routes_by_sni(&self, port: u16) -> bool {
        self.backends_on(port).any(|b| !b.server_names.is_empty())
    }

    /// The backend on `port` serving TLS server name `sni`: an exact name before a wildcard, a
    /// longer wildcard before a shorter one.
    pub fn backend_for_sni(&self, port: u16, sni: &Hostname) -> Option<&Backend> {
        self.backends_on(port)
            .filter_map(|b| {
                b.server_names
                    .iter()
                    .filter(|p| p.matches(sni))
                    .map(HostPattern::specificity)
                    .max()
                    .map(|s| (s, b))
            })
            .max_by(|(a, _), (b, _)| a.cmp(b))
            .map(|(_, b)| b)
    }
}

/// Private endpoints naming one name: exactly (a domain name or the endpoint address) or as
/// `*.name`.
#[derive(Default, Clone, Copy)]
struct EndpointEntry {
    exact: Option<u32>,
    wildcard: Option<u32>,
}

pub(super) fn compile_endpoints(
    docs: &[EndpointDoc],
) -> Result<(Vec<Endpoint>, NameIndex<u32>), CompileError> {
    let mut endpoints = Vec::with_capacity(docs.len());
    let mut names: HashMap<String, EndpointEntry> = HashMap::new();
    let mut ids = HashSet::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let index = i as u32;
        let err = |field: String, message: String| {
            CompileError::new(
                Some(&doc.id),
                format!("private_endpoints[{i}].{field}"),
                message,
            )
        };
        if doc.id.is_empty() {
            return Err(err(
                "id".to_owned(),
                "private endpoint id is empty".to_owned(),
            ));
        }
        if !ids.insert(doc.id.as_str()) {
            return Err(err(
                "id".to_owned(),
                format!(
                    "private endpoint id {} appears more than once",
                    quote(&doc.id)
                ),
            ));
        }
        let mut claim = |pattern: &HostPattern, field: String| {
            let entry = names
                .entry(pattern.hostname().as_str().to_owned())
                .or_default();
            let slot = if pattern.is_wildcard() {
                &mut entry.wildcard
            } else {
                &mut entry.exact
            };
            match *slot {
                Some(other) if other != index => Err(err(
                    field,
                    format!(
                        "{pattern} is already routed to private endpoint {}; a name can be routed to one endpoint only",
                        quote(&docs[other as usize].id)
                    ),
                )),
                _ => {
                    *slot = Some(index);
                    Ok(())
                }
            }
        };
        let endpoint_address = if doc.endpoint_address.is_empty() {
            None
        } else {
            let name: Hostname =
                doc.endpoint_address
                    .parse()
                    .map_err(|e: crate::HostnameError| {
                        err("endpoint_address".to_owned(), e.to_string())
                    })?;
            claim(
                &HostPattern::Exact(name.clone()),
                "endpoint_address".to_owned(),
            )?;
            Some(name)
        };
        let mut domain_names = Vec::with_capacity(doc.domain_names.len());
        for (j, raw) in doc.domain_names.iter().enumerate() {
            let field = format!("domain_names[{j}]");
            let pattern: HostPattern = raw
                .parse()
                .map_err(|e: crate::HostPatternError| err(field.clone(), e.to_string()))?;
            claim(&pattern, field)?;
            domain_names.push(pattern);
        }
        let mut backends = Vec::with_capacity(doc.backends.len());
        for (j, backend) in doc.backends.iter().enumerate() {
            backends.push(
                compile_backend(backend)
                    .map_err(|(field, message)| err(format!("backends[{j}]{field}"), message))?,
            );
        }
        if doc.proxy_protocol && doc.connection_id.len() > 255 {
            return Err(err(
                "connection_id".to_owned(),
                "a connection id carried in a PROXY v2 header is at most 255 bytes".to_owned(),
            ));
        }
        if let Some((j, _)) = doc.ports.iter().enumerate().find(|(_, p)| **p == 0) {
            return Err(err(
                format!("ports[{j}]"),
                "port 0 is not a port".to_owned(),
            ));
        }
        endpoints.push(Endpoint {
            id: Arc::from(doc.id.as_str()),
            region: Arc::from(doc.region.as_str()),
            connection_id: Arc::from(doc.connection_id.as_str()),
            endpoint_address,
            domain_names,
            backends,
            ports: doc.ports.clone(),
            proxy_protocol: doc.proxy_protocol,
            special_addresses: doc.special_addresses,
        });
    }
    let mut keys = Vec::with_capacity(names.len());
    for (name, entry) in names {
        if let Some(index) = entry.exact {
            keys.push((name.clone(), index));
        }
        if let Some(index) = entry.wildcard {
            keys.push((wildcard_key(&name), index));
        }
    }
    let names = NameIndex::build(keys).with_tail_filter();
    Ok((endpoints, names))
}

/// One backend of a document: `(field suffix, message)` on error.
pub(crate) fn compile_backend(doc: &BackendDoc) -> Result<Backend, (String, String)> {
    let bad = || {
        (
            String::new(),
            format!(
                "backend {} is not host:port with a port 1-65535",
                quote(&doc.address)
            ),
        )
    };
    let (host, port) = doc.address.rsplit_once(':').ok_or_else(bad)?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    // `[v6]` as written now; a bare `v6` or a bracketed `[v4]` as earlier registrations
    // accepted them.
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host = match bracketed.unwrap_or(host).parse::<IpAddr>() {
        Ok(ip) => BackendHost::Ip(ip),
        Err(_) if bracketed.is_none() => BackendHost::Name(host.parse().map_err(|_| bad())?),
        Err(_) => return Err(bad()),
    };
    let mut server_names = Vec::with_capacity(doc.server_names.len());
    for (k, raw) in doc.server_names.iter().enumerate() {
        let pattern: HostPattern = raw
            .parse()
            .map_err(|e: crate::HostPatternError| (format!(".server_names[{k}]"), e.to_string()))?;
        server_names.push(pattern);
    }
    Ok(Backend {
        host,
        port,
        server_names,
    })
}
