//! Assuming a role chain with STS (aws-sdk-sts): base credentials first (a URI's keys, or the
//! standard AWS chain for `AUTH=implicit`), then `AssumeRole` hop by hop, each hop signed with
//! the previous hop's credentials and carrying its own external id.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder as HttpBuilder, Connector};

use crate::aws::{AwsAuth, AwsRegion, AwsRole, RoleArn};
use crate::error::{UriError, UriPart};
use crate::s3::S3Uri;
use crate::secret::Secret;

/// A role chain to assume: where it starts and the roles, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleChain {
    pub base: AwsAuth,
    pub roles: Vec<AwsRole>,
    /// The region whose STS endpoint assumes the roles (the broker's default when `None`).
    pub region: Option<AwsRegion>,
}

impl RoleChain {
    /// The chain of an `s3://` URI: its `AUTH` credentials, then its `ASSUME_ROLE` roles.
    pub fn of_s3(uri: &S3Uri) -> RoleChain {
        RoleChain {
            base: uri.auth.clone(),
            roles: uri.assume_role.clone(),
            region: uri.region.clone(),
        }
    }

    /// Put a role in front of the chain (the platform's functional role of a cluster, which
    /// the customer's roles trust). The error names `field` and never holds the value.
    pub fn prepend(&mut self, field: &'static str, role_arn: &str) -> Result<(), UriError> {
        let arn = RoleArn::parse(role_arn).map_err(|m| UriError::new(UriPart::Param(field), m))?;
        self.roles.insert(
            0,
            AwsRole {
                arn,
                external_id: None,
            },
        );
        Ok(())
    }
}

impl fmt::Display for RoleChain {
    /// `implicit -> arn:...:role/a (external id) -> arn:...:role/b`: no secret, no external id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.base {
            AwsAuth::Implicit => f.write_str("implicit")?,
            AwsAuth::Specified { access_key_id, .. } => write!(f, "key {access_key_id}")?,
        }
        for r in &self.roles {
            write!(f, " -> {}", r.arn)?;
            if r.external_id.is_some() {
                f.write_str(" (external id)")?;
            }
        }
        Ok(())
    }
}

/// Short-lived credentials, as STS returned them for the chain's last role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// When the provider says they expire.
    pub expiration: SystemTime,
    /// The assumed-role ARN STS reported (`arn:aws:sts::<account>:assumed-role/<role>/<session>`).
    pub assumed_role_arn: String,
}

/// Why a chain could not be assumed: the base credentials, or one hop, with the provider's
/// reason. Never holds a secret: access key ids and ARNs are not secrets, external ids are not
/// shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(
        "no role to assume: the endpoint hands out role credentials only, never base credentials"
    )]
    Empty,
    #[error("base credentials ({source_kind}): {reason}")]
    Base {
        source_kind: &'static str,
        reason: String,
    },
    #[error("hop {hop} of {of} ({role}): {reason}")]
    Hop {
        /// From 1.
        hop: usize,
        of: usize,
        role: String,
        /// The provider's error code (`AccessDenied`), when it sent one.
        code: Option<String>,
        reason: String,
    },
}

/// How the broker reaches STS.
#[derive(Debug, Clone)]
pub struct StsSettings {
    /// An AWS-compatible endpoint (`http://127.0.0.1:5000`) instead of AWS's regional STS.
    pub endpoint_url: Option<String>,
    /// The region of chains that name none.
    pub region: String,
    /// An HTTP proxy for every call the broker makes (a Perimeter egress gateway).
    pub proxy: Option<String>,
    /// The role session name every hop uses (2-64 of letters, digits and `+=,.@_-`).
    pub session_name: String,
    /// The lifetime asked of each hop (STS allows 15 minutes to the role's maximum; a chained
    /// hop is capped at 1 hour by AWS).
    pub duration: Duration,
}

impl Default for StsSettings {
    fn default() -> Self {
        StsSettings {
            endpoint_url: None,
            region: "us-east-1".into(),
            proxy: None,
            session_name: "perimeter".into(),
            duration: Duration::from_secs(3600),
        }
    }
}

/// A setting the broker cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("session_name: expected 2-64 letters, digits or + = , . @ _ -")]
    SessionName,
    #[error("duration: expected 900 to 43200 seconds")]
    Duration,
}

/// Assumes role chains. Counts its `AssumeRole` calls, so a test or a metric can tell how many
/// reached STS.
pub struct Sts {
    sdk: SdkConfig,
    settings: StsSettings,
    calls: AtomicU64,
}

impl fmt::Debug for Sts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sts")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Sts {
    /// Load the standard AWS configuration (for `AUTH=implicit`: environment, profile, web
    /// identity, container and instance credentials) with the broker's HTTP client.
    pub async fn new(settings: StsSettings) -> Result<Sts, SettingsError> {
        if !(2..=64).contains(&settings.session_name.len())
            || !settings.session_name.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b'_' | b'-')
            })
        {
            return Err(SettingsError::SessionName);
        }
        if !(900..=43200).contains(&settings.duration.as_secs()) {
            return Err(SettingsError::Duration);
        }
        let proxy = match &settings.proxy {
            Some(p) => Some(ProxyConfig::all(p).map_err(|e| SettingsError::Proxy(e.to_string()))?),
            None => None,
        };
        let http = HttpBuilder::new().build_with_connector_fn(move |conn, runtime| {
            let mut b = Connector::builder();
            if let Some(s) = conn {
                b = b.connector_settings(s.clone());
            }
            if let Some(rc) = runtime {
                b.set_sleep_impl(rc.sleep_impl());
            }
            b.set_proxy_config(proxy.clone());
            b.tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build()
        });
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(settings.region.clone()));
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        Ok(Sts {
            sdk: loader.load().await,
            settings,
            calls: AtomicU64::new(0),
        })
    }

    /// `AssumeRole` calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Assume the chain: the last role's credentials, or the failing hop and the reason.
    pub async fn assume(&self, chain: &RoleChain) -> Result<AwsCredentials, ChainError> {
        if chain.roles.is_empty() {
            return Err(ChainError::Empty);
        }
        let mut current = match &chain.base {
            AwsAuth::Specified {
                access_key_id,
                secret_access_key,
                session_token,
            } => Credentials::new(
                access_key_id,
                secret_access_key.expose(),
                session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "uri",
            ),
            AwsAuth::Implicit => {
                let Some(provider) = self.sdk.credentials_provider() else {
                    return Err(ChainError::Base {
                        source_kind: "implicit",
                        reason: "no credentials provider is configured".into(),
                    });
                };
                provider
                    .provide_credentials()
                    .await
                    .map_err(|e| ChainError::Base {
                        source_kind: "implicit",
                        reason: DisplayErrorContext(&e).to_string(),
                    })?
            }
        };
        let region = chain
            .region
            .as_ref()
            .map_or(self.settings.region.clone(), |r| r.as_str().to_string());
        let of = chain.roles.len();
        let mut last = None;
        for (i, role) in chain.roles.iter().enumerate() {
            let hop_error = |code: Option<String>, reason: String| ChainError::Hop {
                hop: i + 1,
                of,
                role: role.arn.to_string(),
                code,
                reason,
            };
            let conf = aws_sdk_sts::config::Builder::from(&self.sdk)
                .region(Region::new(region.clone()))
                .credentials_provider(current.clone())
                .build();
            let client = aws_sdk_sts::Client::from_conf(conf);
            self.calls.fetch_add(1, Ordering::Relaxed);
            let out = client
                .assume_role()
                .role_arn(role.arn.to_string())
                .role_session_name(&self.settings.session_name)
                .set_external_id(role.external_id.as_ref().map(|e| e.expose().to_string()))
                .duration_seconds(self.settings.duration.as_secs() as i32)
                .send()
                .await
                .map_err(|e| match &e {
                    SdkError::ServiceError(s) => {
                        let (code, message) = service_error(
                            s.err().code(),
                            s.err().message(),
                            s.raw().status().as_u16(),
                            s.raw().body().bytes().unwrap_or_default(),
                        );
                        hop_error(
                            code.clone(),
                            format!("{}: {message}", code.as_deref().unwrap_or("error")),
                        )
                    }
                    _ => hop_error(None, DisplayErrorContext(&e).to_string()),
                })?;
            let Some(c) = out.credentials() else {
                return Err(hop_error(None, "the answer carries no credentials".into()));
            };
            let expiration = SystemTime::try_from(*c.expiration())
                .map_err(|_| hop_error(None, "the answer's expiration is out of range".into()))?;
            current = Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                Some(expiration),
                "sts",
            );
            last = Some(AwsCredentials {
                access_key_id: c.access_key_id().to_string(),
                secret_access_key: Secret::new(c.secret_access_key().to_string()),
                session_token: Some(Secret::new(c.session_token().to_string())),
                expiration,
                assumed_role_arn: out
                    .assumed_role_user()
                    .map(|u| u.arn().to_string())
                    .unwrap_or_default(),
            });
        }
        last.ok_or(ChainError::Empty)
    }

    /// `GetCallerIdentity` with the given credentials: who AWS says they are (an ARN).
    pub async fn caller_identity(&self, creds: &AwsCredentials) -> Result<String, String> {
        let conf = aws_sdk_sts::config::Builder::from(&self.sdk)
            .credentials_provider(Credentials::new(
                &creds.access_key_id,
                creds.secret_access_key.expose(),
                creds.session_token.as_ref().map(|t| t.expose().to_string()),
                Some(creds.expiration),
                "sts",
            ))
            .build();
        let out = aws_sdk_sts::Client::from_conf(conf)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
        Ok(out.arn().unwrap_or_default().to_string())
    }
}

/// The provider's error code and message. AWS's query protocol nests them as
/// `ErrorResponse/Error`; some AWS-compatible servers answer `ErrorResponse/Errors/Error`, which
/// the SDK does not read, so the body is searched for `<Code>` and `<Message>` when the SDK found
/// none. Without either, the HTTP status stands in.
fn service_error(
    code: Option<&str>,
    message: Option<&str>,
    status: u16,
    body: &[u8],
) -> (Option<String>, String) {
    let body = String::from_utf8_lossy(body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&format!("</{name}>"))?;
        Some(body[start..start + len].trim().to_string()).filter(|v| !v.is_empty())
    };
    let code = code.map(str::to_string).or_else(|| tag("Code"));
    let message = message
        .map(str::to_string)
        .or_else(|| tag("Message"))
        .unwrap_or_else(|| format!("HTTP {status} with no message"));
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_read_from_either_nesting() {
        let aws = b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                    <Message>not authorized</Message></Error></ErrorResponse>";
        let nested = b"<ErrorResponse><Errors><Error><Code>AccessDenied</Code>\
                       <Message>not authorized</Message></Error></Errors></ErrorResponse>";
        for body in [&aws[..], &nested[..]] {
            assert_eq!(
                service_error(None, None, 403, body),
                (Some("AccessDenied".into()), "not authorized".into())
            );
        }
        assert_eq!(
            service_error(Some("Throttling"), Some("slow down"), 400, b"<x/>"),
            (Some("Throttling".into()), "slow down".into())
        );
        assert_eq!(
            service_error(None, None, 503, b""),
            (None, "HTTP 503 with no message".into())
        );
    }
}
