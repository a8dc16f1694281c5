//! Egress private endpoints: target services and custom domain names.

use std::fmt;
use std::str::FromStr;

use crate::error::quote;
use crate::{FieldError, HostPattern, Provider, validate_region};

/// Most custom domain names one private endpoint may carry.
pub const MAX_DOMAIN_NAMES: usize = 100;
/// Longest target service identifier accepted.
pub const MAX_TARGET_IDENTIFIER_LEN: usize = 512;

/// What a private endpoint connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetServiceType {
    /// An endpoint service (AWS), service attachment (GCP) or Private Link Service (Azure).
    PrivateService,
    /// Amazon MSK with SASL/SCRAM authentication (AWS only).
    MskSaslScram,
    /// Amazon MSK with IAM authentication (AWS only).
    MskSaslIam,
    /// Amazon MSK with mutual TLS authentication (AWS only).
    MskTls,
}

/// A target service type that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "target service type {input} is not known; use one of \"PRIVATE_SERVICE\", \"MSK_SASL_SCRAM\", \"MSK_SASL_IAM\", \"MSK_TLS\""
)]
pub struct TargetServiceTypeError {
    input: String,
}

impl TargetServiceType {
    pub const ALL: [TargetServiceType; 4] = [
        TargetServiceType::PrivateService,
        TargetServiceType::MskSaslScram,
        TargetServiceType::MskSaslIam,
        TargetServiceType::MskTls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetServiceType::PrivateService => "PRIVATE_SERVICE",
            TargetServiceType::MskSaslScram => "MSK_SASL_SCRAM",
            TargetServiceType::MskSaslIam => "MSK_SASL_IAM",
            TargetServiceType::MskTls => "MSK_TLS",
        }
    }

    pub fn is_msk(self) -> bool {
        self != TargetServiceType::PrivateService
    }
}

impl FromStr for TargetServiceType {
    type Err = TargetServiceTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TargetServiceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| TargetServiceTypeError { input: quote(s) })
    }
}

impl fmt::Display for TargetServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::serde_as_string!(TargetServiceType);

const TYPE_FIELD: &str = "target_service_type";
const ID_FIELD: &str = "target_service_identifier";
const REGION_FIELD: &str = "region";

/// Validate the target of an egress private endpoint: its form and region, never account
/// numbers or ids (placeholders such as `example` pass). Fields: `target_service_type`,
/// `target_service_identifier`, `region`.
///
/// - AWS `PRIVATE_SERVICE`: `com.amazonaws.vpce.<region>.vpce-svc-<alnum>` or an AWS service
///   name `com.amazonaws.<region>.<service>` (`com.amazonaws.us-east-1.s3`).
/// - AWS `MSK_*`: `arn:aws:kafka:<region>:<account>:cluster/<name>/<id>`.
/// - GCP `PRIVATE_SERVICE`: `projects/<project>/regions/<region>/serviceAttachments/<name>`.
/// - Azure `PRIVATE_SERVICE`: a Private Link Service resource id
///   `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Network/privateLinkServices/<name>`
///   (which carries no region) or an alias `<name>.<guid>.<region>.azure.privatelinkservice`.
///
/// MSK types exist only on AWS. The region inside the identifier must equal `region`, which must
/// itself be a region of `provider`.
pub fn validate_endpoint_target(
    provider: Provider,
    region: &str,
    target_type: &str,
    identifier: &str,
) -> Result<TargetServiceType, FieldError> {
    validate_region(provider, region, REGION_FIELD)?;
    let target: TargetServiceType = target_type
        .parse()
        .map_err(|e: TargetServiceTypeError| FieldError::new(TYPE_FIELD, e.to_string()))?;
    if target.is_msk() && provider != Provider::Aws {
        return Err(FieldError::new(
            TYPE_FIELD,
            format!(
                "{target} is Amazon MSK, which exists only on AWS; on {provider} use PRIVATE_SERVICE"
            ),
        ));
    }
    if identifier.is_empty() {
        return Err(FieldError::new(
            ID_FIELD,
            format!(
                "target service identifier is empty; give {}",
                expected_form(provider, target)
            ),
        ));
    }
    if identifier.len() > MAX_TARGET_IDENTIFIER_LEN {
        return Err(FieldError::new(
            ID_FIELD,
            format!(
                "target service identifier is {} bytes long; at most {MAX_TARGET_IDENTIFIER_LEN} are allowed",
                identifier.len()
            ),
        ));
    }
    let parsed = match (provider, target) {
        (Provider::Aws, TargetServiceType::PrivateService) => aws_service_region(identifier),
        (Provider::Aws, _) => aws_msk_region(identifier),
        (Provider::Gcp, _) => gcp_attachment_region(identifier),
        (Provider::Azure, _) => azure_region(identifier),
    };
    let Some(inner_region) = parsed else {
        return Err(FieldError::new(
            ID_FIELD,
            format!(
                "{} is not a valid {provider} {target} identifier; give {}",
                quote(identifier),
                expected_form(provider, target)
            ),
        ));
    };
    if let Some(inner) = inner_region
        && inner != region
    {
        return Err(FieldError::new(
            REGION_FIELD,
            format!(
                "region is {region} but the target service identifier names region {}; they must be the same",
                quote(inner)
            ),
        ));
    }
    Ok(target)
}

fn expected_form(provider: Provider, target: TargetServiceType) -> &'static str {
    match (provider, target) {
        (Provider::Aws, TargetServiceType::PrivateService) => {
            "an endpoint service name such as com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0, or an AWS service name such as com.amazonaws.us-east-1.s3"
        }
        (Provider::Aws, _) => {
            "an MSK cluster ARN such as arn:aws:kafka:us-east-1:123456789012:cluster/my-cluster/abcd1234-ab12-cd34-ef56-abcdef123456-1"
        }
        (Provider::Gcp, _) => {
            "a service attachment such as projects/my-project/regions/us-east1/serviceAttachments/my-attachment"
        }
        (Provider::Azure, _) => {
            "a Private Link Service resource id such as /subscriptions/<subscription>/resourceGroups/<group>/providers/Microsoft.Network/privateLinkServices/<name>, or an alias such as my-service.00000000-0000-0000-0000-000000000000.eastus.azure.privatelinkservice"
        }
    }
}

/// A non-empty run of the given characters.
fn token(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(allowed)
}

fn lower_alnum_hyphen(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '-')
}

fn alnum_hyphen(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// `Some(Some(region))` for a valid identifier naming a region, `Some(None)` for a valid
/// identifier without region, `None` for an invalid one.
type RegionOf<'a> = Option<Option<&'a str>>;

fn aws_service_region(id: &str) -> RegionOf<'_> {
    let rest = id.strip_prefix("com.amazonaws.")?;
    if let Some(rest) = rest.strip_prefix("vpce.") {
        let (region, service) = rest.split_once('.')?;
        let svc = service.strip_prefix("vpce-svc-")?;
        return (token(region, lower_alnum_hyphen) && token(svc, |c| c.is_ascii_alphanumeric()))
            .then_some(Some(region));
    }
    let (region, service) = rest.split_once('.')?;
    (token(region, lower_alnum_hyphen)
        && service
            .split('.')
            .all(|label| token(label, lower_alnum_hyphen)))
    .then_some(Some(region))
}

fn aws_msk_region(id: &str) -> RegionOf<'_> {
    let rest = id.strip_prefix("arn:aws:kafka:")?;
    let mut parts = rest.splitn(3, ':');
    let (region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    let mut res = resource.split('/');
    let ok = token(region, lower_alnum_hyphen)
        && token(account, |c| alnum_hyphen(c) || c == '_')
        && res.next() == Some("cluster")
        && res.next().is_some_and(|name| token(name, alnum_hyphen))
        && res.next().is_some_and(|id| token(id, alnum_hyphen))
        && res.next().is_none();
    ok.then_some(Some(region))
}

fn gcp_attachment_region(id: &str) -> RegionOf<'_> {
    let parts: Vec<&str> = id.split('/').collect();
    let [
        "projects",
        project,
        "regions",
        region,
        "serviceAttachments",
        name,
    ] = parts.as_slice()
    else {
        return None;
    };
    let ok = token(project, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')
    }) && token(region, lower_alnum_hyphen)
        && token(name, lower_alnum_hyphen);
    ok.then_some(Some(*region))
}

fn azure_region(id: &str) -> RegionOf<'_> {
    if id.starts_with('/') {
        let parts: Vec<&str> = id.split('/').collect();
        let [
            "",
            subs,
            sub,
            groups,
            group,
            providers,
            namespace,
            kind,
            name,
        ] = parts.as_slice()
        else {
            return None;
        };
        let azure_name =
            |s: &str| token(s, |c| alnum_hyphen(c) || matches!(c, '_' | '.' | '(' | ')'));
        let ok = subs.eq_ignore_ascii_case("subscriptions")
            && groups.eq_ignore_ascii_case("resourceGroups")
            && providers.eq_ignore_ascii_case("providers")
            && namespace.eq_ignore_ascii_case("Microsoft.Network")
            && kind.eq_ignore_ascii_case("privateLinkServices")
            && azure_name(sub)
            && azure_name(group)
            && azure_name(name);
        return ok.then_some(None);
    }
    let rest = id.strip_suffix(".azure.privatelinkservice")?;
    let (rest, region) = rest.rsplit_once('.')?;
    let (name, guid) = rest.rsplit_once('.')?;
    let ok = token(region, |c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && token(guid, alnum_hyphen)
        && token(name, |c| alnum_hyphen(c) || matches!(c, '_' | '.'));
    ok.then_some(Some(region))
}

/// Validate the custom domain names of a private endpoint: each a [`HostPattern`] (wildcards
/// allowed, not over a public suffix), errors on `domain_names[i]`; at most 100. Returns the
/// canonical forms, deduplicated, in the order given.
pub fn validate_domain_names(names: &[String]) -> Result<Vec<String>, FieldError> {
    if names.len() > MAX_DOMAIN_NAMES {
        return Err(FieldError::new(
            "domain_names",
            format!(
                "{} domain names listed; a private endpoint carries at most {MAX_DOMAIN_NAMES}; use wildcards such as *.example.com",
                names.len()
            ),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let pattern: HostPattern = name.parse().map_err(|e: crate::HostPatternError| {
            FieldError::new(format!("domain_names[{i}]"), e.to_string())
        })?;
        let canonical = pattern.to_string();
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
