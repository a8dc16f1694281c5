//! TLS parameters shared by `kafka://` and `webhook-https://`: `ca_cert`, `client_cert`,
//! `client_key` (base64 PEM, as CockroachDB takes them) and `insecure_tls_skip_verify`.

use base64::Engine;

use crate::error::UriError;
use crate::params::Params;
use crate::secret::Secret;

/// The TLS parameters that need TLS on.
pub(crate) const TLS_PARAMS: &[&str] = &[
    "ca_cert",
    "client_cert",
    "client_key",
    "insecure_tls_skip_verify",
];

/// TLS settings of a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Base64 PEM of the CA certificate to trust, when not the system's.
    pub ca_cert: Option<String>,
    /// Client certificate for mutual TLS.
    pub client: Option<ClientCert>,
    /// Server certificates are not verified (the sink is open to interception).
    pub insecure_skip_verify: bool,
}

/// A client certificate (base64 PEM, shown) and its private key (base64 PEM, secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: String,
    pub key: Secret,
}

/// Take the TLS parameters.
pub(crate) fn take(params: &mut Params) -> Result<Tls, UriError> {
    let ca_cert = params.take("ca_cert");
    if let Some(c) = &ca_cert {
        pem("ca_cert", c, "CERTIFICATE")?;
    }
    let cert = params.take("client_cert");
    let key = params.take("client_key");
    let client = match (cert, key) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(UriError::param(
                "client_key",
                "required with client_cert (mutual TLS needs both)",
            ));
        }
        (None, Some(_)) => {
            return Err(UriError::param(
                "client_cert",
                "required with client_key (mutual TLS needs both)",
            ));
        }
        (Some(cert), Some(key)) => {
            pem("client_cert", &cert, "CERTIFICATE")?;
            let text = pem("client_key", &key, "PRIVATE KEY")?;
            if text.contains("ENCRYPTED") {
                return Err(UriError::param(
                    "client_key",
                    "an encrypted private key; decrypt it first (openssl pkey -in key.pem)",
                ));
            }
            Some(ClientCert {
                cert,
                key: Secret::new(key),
            })
        }
    };
    let insecure_skip_verify = params
        .take_bool("insecure_tls_skip_verify")?
        .unwrap_or(false);
    Ok(Tls {
        ca_cert,
        client,
        insecure_skip_verify,
    })
}

/// Decode base64 PEM and check it holds a `-----BEGIN ...<kind>-----` block.
fn pem(param: &'static str, value: &str, kind: &str) -> Result<String, UriError> {
    let expected = format!("expected base64 of a PEM {kind} block (base64 -w 0 file.pem)");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(value))
        .map_err(|_| UriError::param(param, format!("not base64; {expected}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| UriError::param(param, format!("not PEM text; {expected}")))?;
    let begins = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{kind}-----")));
    if !begins {
        return Err(UriError::param(param, format!("no PEM block; {expected}")));
    }
    Ok(text)
}
