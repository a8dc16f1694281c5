//! The `aws` provider: who carries private endpoints when `perimeter serve --provider aws`.
//!
//! - An egress private endpoint is an interface VPC endpoint in the region's platform VPC
//!   ([`egress`]).
//! - Its custom domain names are Route 53 private hosted zones associated with that VPC
//!   ([`dns`]).
//! - A cluster region's private endpoint service is a VPC endpoint service on the region's
//!   network load balancers, with acceptance required ([`ingress`]).
//!
//! Every resource carries the tag `perimeter:cluster=<cluster id>`, and what one operation
//! creates also carries a tag naming it, so a create that succeeded at AWS but was never
//! recorded (a crash between the two) is found again instead of being made twice. Creates also
//! send a `ClientToken` derived from the operation's id, AWS's own idempotency.
//!
//! The functions here make the calls and read the answers; the control plane's reconciler
//! decides when to call them, under its lease.

pub mod config;
pub mod dns;
pub mod egress;
mod error;
pub mod ingress;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder as HttpBuilder, Connector};

pub use config::{ConfigError, ProviderConfig, RegionConfig};
pub use error::{AwsError, transient_code};

/// Tag naming the cluster a resource belongs to.
pub const CLUSTER_TAG: &str = "perimeter:cluster";
/// Tag naming the egress private endpoint an interface endpoint carries.
pub const ENDPOINT_TAG: &str = "perimeter:endpoint";
/// Tag naming the cluster region a VPC endpoint service serves.
pub const REGION_TAG: &str = "perimeter:region";

/// How the SDK retries one call before the reconciler sees an error: AWS's standard mode
/// (exponential backoff with jitter, throttling and transient errors only).
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
        }
    }
}

/// The AWS clients of the configured regions.
#[derive(Debug, Clone)]
pub struct AwsProvider {
    config: ProviderConfig,
    ec2: BTreeMap<String, aws_sdk_ec2::Client>,
    route53: aws_sdk_route53::Client,
}

impl AwsProvider {
    /// Clients for every configured region, with credentials from the standard AWS chain
    /// (environment, profile, web identity, container or instance role). Nothing is called yet.
    pub async fn connect(config: ProviderConfig, retries: Retries) -> AwsProvider {
        AwsProvider::connect_with(config, retries, None).await
    }

    /// [`AwsProvider::connect`] with static keys (`(access key id, secret)`) instead of the
    /// standard chain when given: for servers that take any keys, such as test servers.
    pub async fn connect_with(
        config: ProviderConfig,
        retries: Retries,
        keys: Option<(&str, &str)>,
    ) -> AwsProvider {
        let http = HttpBuilder::new().build_with_connector_fn(|conn, runtime| {
            let mut b = Connector::builder();
            if let Some(s) = conn {
                b = b.connector_settings(s.clone());
            }
            if let Some(rc) = runtime {
                b.set_sleep_impl(rc.sleep_impl());
            }
            b.tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build()
        });
        // A call that stalls must not stall the reconciler: each attempt and each call (its
        // retries included) has a bound.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(20))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let retry = RetryConfig::standard()
            .with_max_attempts(retries.max_attempts.max(1))
            .with_initial_backoff(retries.initial_backoff);
        let mut ec2 = BTreeMap::new();
        let mut route53 = None;
        for region in config.regions.keys() {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http.clone())
                .retry_config(retry.clone())
                .timeout_config(timeouts.clone())
                .region(aws_config::Region::new(region.clone()));
            if let Some(url) = &config.endpoint_url {
                loader = loader.endpoint_url(url);
            }
            if let Some((id, secret)) = keys {
                loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                    id,
                    secret,
                    None,
                    None,
                    "perimeter-static",
                ));
            }
            let sdk = loader.load().await;
            if route53.is_none() {
                route53 = Some(aws_sdk_route53::Client::new(&sdk));
            }
            ec2.insert(region.clone(), aws_sdk_ec2::Client::new(&sdk));
        }
        AwsProvider {
            route53: route53.expect("a checked configuration names at least one region"),
            config,
            ec2,
        }
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// Whether the configuration names `region`.
    pub fn serves_region(&self, region: &str) -> bool {
        self.ec2.contains_key(region)
    }

    /// The region's EC2 client and networking, or why the region cannot be served.
    fn region(
        &self,
        operation: &'static str,
        region: &str,
    ) -> Result<(&aws_sdk_ec2::Client, &RegionConfig), AwsError> {
        match (self.ec2.get(region), self.config.region(region)) {
            (Some(c), Some(r)) => Ok((c, r)),
            _ => Err(AwsError::new(
                operation,
                format!(
                    "region {region} is not in the provider configuration (--provider-config): add a [regions.{region}] table with its VPC, subnets and security groups"
                ),
            )),
        }
    }
}

/// A tag of EC2's.
fn ec2_tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
}

/// The value of `key` among EC2 tags.
fn tag_value<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// The first item a bulk EC2 call could not do, as an error; with `gone_is_done`, an item
/// that no longer exists (`*.NotFound`, a delete repeated) is not one.
fn unsuccessful(
    operation: &'static str,
    items: &[aws_sdk_ec2::types::UnsuccessfulItem],
    gone_is_done: bool,
) -> Result<(), AwsError> {
    for item in items {
        let code = item.error().and_then(|e| e.code()).unwrap_or_default();
        if gone_is_done && code.ends_with(".NotFound") {
            continue;
        }
        return Err(AwsError {
            operation,
            code: Some(code.to_string()).filter(|c| !c.is_empty()),
            message: format!(
                "{}: {}",
                item.resource_id().unwrap_or_default(),
                item.error().and_then(|e| e.message()).unwrap_or("refused")
            ),
            transient: transient_code(code),
        });
    }
    Ok(())
}

/// A `ClientToken` from ids of ours: at most 64 ASCII characters, the same on every retry.
fn client_token(prefix: &str, ids: &[&str]) -> String {
    format!("perimeter-{prefix}-{}", digest(ids))
}

/// 40 hex digits of SHA-256 over `parts` (each length-prefixed): a stable name for them.
fn digest(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
}
