//! External storage and sink URIs, the way backup and changefeed jobs name their destinations
//! (CockroachDB's syntax): `s3://`, `gs://`, `azure-blob://` (and its deprecated `azure://`,
//! `azure-storage://`), `kafka://` and `webhook-https://`, with their query parameters.
//!
//! - [`parse`] turns a URI into an [`ExternalUri`] or refuses it with a [`UriError`] that names
//!   the part at fault and what is expected there. Unknown, misspelt, duplicated and empty
//!   parameters are refused, and so are combinations that cannot work (`AUTH=specified` without
//!   keys, `AUTH=implicit` with keys, `ASSUME_ROLE` without `AUTH`, SASL or TLS parameters
//!   without `sasl_enabled` / `tls_enabled`, a mechanism's missing parameters).
//! - [`ExternalUri::destinations`] lists the hosts and ports the URI makes its user connect to
//!   (storage, brokers, webhook, and STS or token endpoints its credentials need), for
//!   egress-check and egress rules. [`ExternalUri::role_chain`] lists the roles it assumes.
//! - [`redact`] returns the URI with every secret replaced by `redacted`, even when the URI is
//!   not valid; errors never contain a value of the URI at all.
//!
//! - [`RoleTemplate`] and [`RolePurpose`] are the platform's functional roles: per purpose
//!   (`backup`, `changefeed`), the role ARN template, such as
//!   `arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}`, that is put first in every
//!   chain a cluster's jobs assume; [`RoleTemplate::expand`] gives a cluster's role ARN.
//!
//! Secret values are held in [`Secret`], whose `Debug` does not show them. Which parameters are
//! secret: [`SECRET_PARAMS`], userinfo passwords, `ASSUME_ROLE` external ids, a webhook's path,
//! and the value of any parameter this crate does not know.
//!
//! The URI model above is pure: no I/O, no clock, no async. The [`broker`] module (feature
//! `broker`, on by default) is the I/O half: it assumes AWS role chains with STS, caches and
//! refreshes the credentials, and serves them over the container-credentials protocol.

mod aws;
mod azure;
#[cfg(feature = "broker")]
pub mod broker;
mod destination;
mod error;
mod functional;
mod gcs;
mod kafka;
mod params;
mod redact;
mod s3;
mod secret;
mod syntax;
mod tls;
mod webhook;

use std::str::FromStr;

pub use aws::{AwsAuth, AwsRegion, AwsRole, MAX_CHAIN, Partition, RoleArn, RoleArnError};
pub use azure::{AzureAuth, AzureEnvironment, AzureUri};
pub use destination::{Destination, Endpoint, Host, Purpose};
pub use error::{UriError, UriPart};
pub use functional::{
    BACKUP, CHANGEFEED, ClusterIdentity, FunctionalRoleError, MAX_ROLE_NAME, RolePurpose,
    RoleTemplate, WELL_KNOWN_PURPOSES,
};
pub use gcs::{GcsAuth, GcsUri, ServiceAccount};
pub use kafka::{KafkaUri, Sasl};
pub use params::SECRET_PARAMS;
pub use redact::{REDACTED, redact};
pub use s3::S3Uri;
pub use secret::Secret;
pub use syntax::{MAX_URI_LEN, encode};
pub use tls::{ClientCert, Tls};
pub use webhook::WebhookUri;

use params::Params;

/// A valid external storage or sink URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalUri {
    S3(S3Uri),
    Gcs(GcsUri),
    Azure(AzureUri),
    Kafka(KafkaUri),
    Webhook(WebhookUri),
}

/// One link of a role chain: who is assumed (a role ARN, a service account) and whether an
/// external id goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink<'a> {
    pub principal: String,
    pub external_id: Option<&'a Secret>,
}

/// Parse and validate an external URI.
pub fn parse(input: &str) -> Result<ExternalUri, UriError> {
    let s = syntax::split(input)?;
    let scheme = s.scheme.to_ascii_lowercase();
    let (kind, deprecated) = match scheme.as_str() {
        "s3" => ("s3", None),
        "gs" => ("gs", None),
        "azure-blob" => ("azure-blob", None),
        "azure" => ("azure-blob", Some("azure")),
        "azure-storage" => ("azure-blob", Some("azure-storage")),
        "kafka" => ("kafka", None),
        "webhook-https" => ("webhook-https", None),
        _ => {
            return Err(UriError::new(
                UriPart::Scheme,
                "not supported; expected one of s3, gs, azure-blob (or its deprecated azure, \
                 azure-storage), kafka, webhook-https",
            ));
        }
    };
    if s.userinfo.is_some() {
        return Err(UriError::new(
            UriPart::Userinfo,
            "credentials before '@' are not accepted; give them as query parameters",
        ));
    }
    if s.fragment.is_some() {
        return Err(UriError::new(
            UriPart::Fragment,
            "a '#' fragment is not accepted; percent-encode '#' as %23",
        ));
    }
    if let Err(e) = syntax::decode(s.path) {
        return Err(UriError::new(UriPart::Path, format!("has {}", e.text())));
    }
    Ok(match kind {
        "s3" => ExternalUri::S3(s3::parse(
            s.authority,
            s.path,
            Params::collect("s3", params::S3, s.query)?,
        )?),
        "gs" => ExternalUri::Gcs(gcs::parse(
            s.authority,
            s.path,
            Params::collect("gs", params::GS, s.query)?,
        )?),
        "azure-blob" => ExternalUri::Azure(azure::parse(
            s.authority,
            s.path,
            deprecated,
            Params::collect("azure-blob", params::AZURE, s.query)?,
        )?),
        "kafka" => ExternalUri::Kafka(kafka::parse(
            s.authority,
            s.path,
            Params::collect("kafka", params::KAFKA, s.query)?,
        )?),
        _ => ExternalUri::Webhook(webhook::parse(
            s.authority,
            s.path,
            Params::collect("webhook-https", params::WEBHOOK, s.query)?,
        )?),
    })
}

impl FromStr for ExternalUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl ExternalUri {
    /// The canonical scheme (`azure-blob` for its deprecated spellings too).
    pub fn scheme(&self) -> &'static str {
        match self {
            ExternalUri::S3(_) => "s3",
            ExternalUri::Gcs(_) => "gs",
            ExternalUri::Azure(_) => "azure-blob",
            ExternalUri::Kafka(_) => "kafka",
            ExternalUri::Webhook(_) => "webhook-https",
        }
    }

    /// How the URI authenticates, in words (`implicit`, `specified (access key)`, `sasl
    /// SCRAM-SHA-256 over tls`...). Never a secret.
    pub fn auth_mode(&self) -> String {
        match self {
            ExternalUri::S3(u) => match &u.auth {
                AwsAuth::Implicit => "implicit".into(),
                AwsAuth::Specified {
                    session_token: None,
                    ..
                } => "specified (access key)".into(),
                AwsAuth::Specified { .. } => "specified (access key and session token)".into(),
            },
            ExternalUri::Gcs(u) => match u.auth {
                GcsAuth::Implicit => "implicit".into(),
                GcsAuth::Credentials(_) => "specified (service account key)".into(),
                GcsAuth::BearerToken(_) => "specified (bearer token)".into(),
            },
            ExternalUri::Azure(u) => match u.auth {
                AzureAuth::Implicit => "implicit".into(),
                AzureAuth::AccountKey(_) => "specified (account key)".into(),
                AzureAuth::ClientSecret { .. } => "specified (service principal)".into(),
            },
            ExternalUri::Kafka(u) => {
                let sasl = u
                    .sasl
                    .as_ref()
                    .map_or("no sasl".to_string(), |s| format!("sasl {}", s.mechanism()));
                let tls = match &u.tls {
                    None => "plaintext",
                    Some(t) if t.client.is_some() => "mutual tls",
                    Some(_) => "tls",
                };
                format!("{sasl} over {tls}")
            }
            ExternalUri::Webhook(u) => {
                if u.tls.client.is_some() {
                    "mutual tls".into()
                } else {
                    "tls".into()
                }
            }
        }
    }

    /// The roles assumed, in order: `ASSUME_ROLE` (AWS roles, GCP service accounts) or
    /// Kafka's `sasl_aws_iam_role_arn`.
    pub fn role_chain(&self) -> Vec<ChainLink<'_>> {
        match self {
            ExternalUri::S3(u) => u
                .assume_role
                .iter()
                .map(|r| ChainLink {
                    principal: r.arn.to_string(),
                    external_id: r.external_id.as_ref(),
                })
                .collect(),
            ExternalUri::Gcs(u) => u
                .assume_role
                .iter()
                .map(|sa| ChainLink {
                    principal: sa.as_str().to_string(),
                    external_id: None,
                })
                .collect(),
            ExternalUri::Kafka(KafkaUri {
                sasl: Some(Sasl::AwsMskIam { role_arn, .. }),
                ..
            }) => vec![ChainLink {
                principal: role_arn.to_string(),
                external_id: None,
            }],
            _ => Vec::new(),
        }
    }

    /// The hosts and ports the URI implies: the storage, brokers or webhook first, then the
    /// endpoints its credentials need (STS for a role chain, OAuth token endpoints).
    pub fn destinations(&self) -> Vec<Destination> {
        match self {
            ExternalUri::S3(u) => u.destinations(),
            ExternalUri::Gcs(u) => u.destinations(),
            ExternalUri::Azure(u) => u.destinations(),
            ExternalUri::Kafka(u) => u.destinations(),
            ExternalUri::Webhook(u) => u.destinations(),
        }
    }

    /// Advice that is not an error: deprecated spellings, disabled verification.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut w = Vec::new();
        match self {
            ExternalUri::Azure(u) if u.deprecated_scheme.is_some() => {
                w.push(
                    "azure:// and azure-storage:// are deprecated spellings; write azure-blob://",
                );
            }
            ExternalUri::Kafka(KafkaUri { tls: Some(t), .. })
            | ExternalUri::Webhook(WebhookUri { tls: t, .. })
                if t.insecure_skip_verify =>
            {
                w.push("insecure_tls_skip_verify=true: the server's certificate is not verified");
            }
            ExternalUri::Kafka(KafkaUri {
                tls: None,
                sasl: Some(Sasl::Plain { .. } | Sasl::ScramSha256 { .. } | Sasl::ScramSha512 { .. }),
                ..
            }) => {
                w.push("SASL credentials go over plaintext: set tls_enabled=true");
            }
            _ => {}
        }
        w
    }
}

#[cfg(test)]
mod tests;
