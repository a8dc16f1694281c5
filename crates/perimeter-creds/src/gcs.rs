//! `gs://<bucket>/<path>?AUTH=...`: Google Cloud Storage.
//!
//! As in CockroachDB: `AUTH` defaults to `specified`, which needs `CREDENTIALS` (base64 of a
//! JSON key) or `BEARER_TOKEN` (one of them); `AUTH=implicit` uses the environment's
//! credentials. `ASSUME_ROLE` is a chain of service accounts impersonated in order, and needs
//! an explicit `AUTH`.

use base64::Engine;

use crate::destination::{Destination, Purpose, dns_name};
use crate::error::{UriError, UriPart};
use crate::params::Params;
use crate::s3::{AuthParam, auth_param, chain_needs_auth};
use crate::secret::Secret;

/// A parsed `gs://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsUri {
    pub bucket: String,
    pub path: String,
    pub auth: GcsAuth,
    /// Service accounts impersonated in order.
    pub assume_role: Vec<ServiceAccount>,
}

/// The credentials a `gs://` URI starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcsAuth {
    Implicit,
    /// Base64 of a JSON key file.
    Credentials(Secret),
    /// An OAuth2 access token.
    BearerToken(Secret),
}

/// A service account email (`name@project.iam.gserviceaccount.com`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccount(String);

impl ServiceAccount {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parse(part: UriPart, s: &str) -> Result<ServiceAccount, UriError> {
        let expected = "expected a service account email (name@project.iam.gserviceaccount.com)";
        if s.contains(';') {
            return Err(UriError::new(
                part,
                format!("options after ';' (external ids) are an AWS notion; {expected}"),
            ));
        }
        let ok = s.split_once('@').is_some_and(|(local, domain)| {
            (1..=64).contains(&local.len())
                && local
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && dns_name(domain).is_ok_and(|d| d == domain)
                && domain.ends_with(".gserviceaccount.com")
        });
        if ok {
            Ok(ServiceAccount(s.to_string()))
        } else {
            Err(UriError::new(part, expected))
        }
    }
}

pub(crate) fn parse(bucket: &str, path: &str, mut params: Params) -> Result<GcsUri, UriError> {
    let bucket = gcs_bucket(bucket)?;
    let auth = auth_param(&mut params)?;
    chain_needs_auth(auth, &params)?;
    let credentials = params.take("CREDENTIALS");
    let token = params.take("BEARER_TOKEN");
    let auth = match (auth, credentials, token) {
        (AuthParam::Implicit, Some(_), _) => {
            return Err(UriError::param(
                "CREDENTIALS",
                "not accepted with AUTH=implicit; drop it, or use AUTH=specified",
            ));
        }
        (AuthParam::Implicit, None, Some(_)) => {
            return Err(UriError::param(
                "BEARER_TOKEN",
                "not accepted with AUTH=implicit; drop it, or use AUTH=specified",
            ));
        }
        (AuthParam::Implicit, None, None) => GcsAuth::Implicit,
        (_, Some(_), Some(_)) => {
            return Err(UriError::param(
                "BEARER_TOKEN",
                "not accepted together with CREDENTIALS; give one of them",
            ));
        }
        (_, Some(c), None) => {
            key_json(&c)?;
            GcsAuth::Credentials(Secret::new(c))
        }
        (_, None, Some(t)) => GcsAuth::BearerToken(Secret::new(t)),
        (a, None, None) => {
            let default = if a == AuthParam::Absent {
                " (the default when AUTH is not given)"
            } else {
                ""
            };
            return Err(UriError::param(
                "CREDENTIALS",
                format!(
                    "required with AUTH=specified{default}: give CREDENTIALS (base64 of a JSON \
                     key) or BEARER_TOKEN; or use AUTH=implicit"
                ),
            ));
        }
    };
    let mut assume_role = Vec::new();
    if let Some(v) = params.take("ASSUME_ROLE") {
        for (i, sa) in v.split(',').enumerate() {
            if i >= crate::aws::MAX_CHAIN {
                return Err(UriError::param(
                    "ASSUME_ROLE",
                    format!(
                        "more than {} service accounts in the chain",
                        crate::aws::MAX_CHAIN
                    ),
                ));
            }
            assume_role.push(ServiceAccount::parse(UriPart::Entry("ASSUME_ROLE", i), sa)?);
        }
    }
    Ok(GcsUri {
        bucket,
        path: path.to_string(),
        auth,
        assume_role,
    })
}

/// CREDENTIALS must be base64 of a JSON object with a string `type` (a key file).
fn key_json(value: &str) -> Result<(), UriError> {
    let expected = "expected base64 of a JSON key file (base64 -w 0 key.json)";
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(value))
        .map_err(|_| UriError::param("CREDENTIALS", format!("not base64; {expected}")))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| UriError::param("CREDENTIALS", format!("not JSON; {expected}")))?;
    if !json.get("type").is_some_and(serde_json::Value::is_string) {
        return Err(UriError::param(
            "CREDENTIALS",
            format!("the JSON has no \"type\"; {expected}"),
        ));
    }
    Ok(())
}

impl GcsUri {
    pub fn destinations(&self) -> Vec<Destination> {
        let mut out = vec![Destination::name(
            "storage.googleapis.com",
            443,
            Purpose::Storage,
        )];
        if matches!(self.auth, GcsAuth::Credentials(_)) {
            out.push(Destination::name(
                "oauth2.googleapis.com",
                443,
                Purpose::Token,
            ));
        }
        if !self.assume_role.is_empty() {
            out.push(Destination::name(
                "iamcredentials.googleapis.com",
                443,
                Purpose::Impersonation,
            ));
        }
        out
    }
}

/// A GCS bucket name: 3-63 characters (222 with dots, 63 between them) of lower-case letters,
/// digits, '-', '_' and '.', starting and ending with a letter or digit.
fn gcs_bucket(b: &str) -> Result<String, UriError> {
    let err = |m: &str| UriError::new(UriPart::Bucket, m.to_string());
    if b.is_empty() {
        return Err(err("missing; expected gs://<bucket>/<path>"));
    }
    let max = if b.contains('.') { 222 } else { 63 };
    if b.len() < 3 || b.len() > max || b.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(err(
            "must be 3-63 characters (up to 222 with dots, 1-63 between them)",
        ));
    }
    if !b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_'))
    {
        return Err(err("expected lower-case letters, digits, '-', '_' and '.'"));
    }
    let ok = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok(b.bytes().next()) || !ok(b.bytes().last()) {
        return Err(err("must start and end with a letter or digit"));
    }
    Ok(b.to_string())
}
