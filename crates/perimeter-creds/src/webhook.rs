//! `webhook-https://<host>[:port]/<path>?...`: a webhook changefeed sink (port 443 by default).
//! Its path is redacted when shown: hooks often carry their token there.

use crate::destination::{self, Destination, Host, HostPortError, Purpose};
use crate::error::{UriError, UriPart};
use crate::params::Params;
use crate::secret::Secret;
use crate::tls::{self, Tls};

/// A parsed `webhook-https://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUri {
    pub host: Host,
    pub port: u16,
    /// The path (and the token it often carries): a secret.
    pub path: Secret,
    pub tls: Tls,
}

pub(crate) fn parse(
    authority: &str,
    path: &str,
    mut params: Params,
) -> Result<WebhookUri, UriError> {
    if authority.is_empty() {
        return Err(UriError::new(
            UriPart::Host,
            "missing; expected webhook-https://host[:port]/path",
        ));
    }
    let (host, port) = destination::host_port(authority, 443).map_err(|e| match e {
        HostPortError::Host(m) => UriError::new(UriPart::Host, m),
        HostPortError::Port(m) => UriError::new(UriPart::Port, m),
    })?;
    let tls = tls::take(&mut params)?;
    Ok(WebhookUri {
        host,
        port,
        path: Secret::new(path.to_string()),
        tls,
    })
}

impl WebhookUri {
    pub fn destinations(&self) -> Vec<Destination> {
        vec![Destination {
            host: self.host.clone(),
            port: self.port,
            purpose: Purpose::Webhook,
        }]
    }
}
