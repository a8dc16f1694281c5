//! Name resolution for what-if answers (egress-check). The gateways decide a name per address
//! they resolve for it (a CIDR rule admits a name whose address it covers), so the what-if
//! resolves the name as they do. The API does no DNS of its own: the binary injects the
//! gateways' resolver, with the DNS servers and hosts file of its embedded gateways, through
//! [`AppState::with_resolver`](crate::AppState::with_resolver).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use perimeter_policy::Hostname;

/// What [`NameResolver::resolve`] returns.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, ResolveError>> + Send + 'a>>;

/// Resolves names as the gateways do.
pub trait NameResolver: Send + Sync + 'static {
    /// The addresses of `name`, in the order the gateways try them.
    fn resolve<'a>(&'a self, name: &'a Hostname) -> ResolveFuture<'a>;
}

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ResolveError {
    /// Stable reason, as the gateways report it: `dns_nxdomain`, `dns_no_records`,
    /// `dns_timeout`, `dns_failure`.
    pub reason: &'static str,
    /// For people, e.g. "db.example.com does not exist (NXDOMAIN)".
    pub message: String,
}
