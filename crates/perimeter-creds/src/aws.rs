//! AWS pieces shared by `s3://` and Kafka's `AWS_MSK_IAM`: partitions, regions, role ARNs, the
//! `ASSUME_ROLE` chain (`arn[;external_id=ID],arn...`), the base credentials a chain starts from,
//! and the STS endpoint a chain is assumed at.
//!
//! External ids are treated as secrets: AWS calls them "not secret", but an external id is the
//! one value that keeps a third party's confused deputy from assuming the role, and a reader of
//! a log gains nothing from seeing it. They are redacted and shown only as present or absent.

use std::fmt;
use std::str::FromStr;

use crate::destination::{Destination, Purpose};
use crate::error::{UriError, UriPart};
use crate::secret::Secret;

/// The longest role chain accepted.
pub const MAX_CHAIN: usize = 16;

/// An AWS partition a role ARN may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
}

impl Partition {
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }

    /// The DNS suffix of the partition's service endpoints.
    fn dns_suffix(self) -> &'static str {
        match self {
            Partition::AwsCn => "amazonaws.com.cn",
            Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
        }
    }
}

/// An IAM role ARN: `arn:<partition>:iam::<12-digit account>:role/<path/><name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleArn {
    partition: Partition,
    account: String,
    /// The role's path and name, after `role/`.
    name: String,
}

impl RoleArn {
    pub fn partition(&self) -> Partition {
        self.partition
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// The role's path and name, after `role/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parse a role ARN; the error says what is expected, without the value.
    pub(crate) fn parse(s: &str) -> Result<RoleArn, String> {
        const SHAPE: &str = "expected arn:aws:iam::<12-digit account>:role/<name> \
                             (partition aws, aws-cn or aws-us-gov)";
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(format!("not an ARN; {SHAPE}"));
        };
        if arn != "arn" {
            return Err(format!("does not start with 'arn:'; {SHAPE}"));
        }
        let partition = match partition {
            "aws" => Partition::Aws,
            "aws-cn" => Partition::AwsCn,
            "aws-us-gov" => Partition::AwsUsGov,
            _ => return Err(format!("unknown partition; {SHAPE}")),
        };
        if service != "iam" {
            return Err(format!("not an IAM ARN; {SHAPE}"));
        }
        if !region.is_empty() {
            return Err(format!("IAM ARNs have an empty region field; {SHAPE}"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "the account id must be 12 digits (this one has {} characters); {SHAPE}",
                account.len()
            ));
        }
        let Some(name) = resource.strip_prefix("role/") else {
            return Err(format!(
                "not a role (the resource must start with role/); {SHAPE}"
            ));
        };
        let (path, last) = match name.rsplit_once('/') {
            Some((p, l)) => (p, l),
            None => ("", name),
        };
        if last.is_empty() || last.len() > 64 || !last.bytes().all(iam_name_byte) {
            return Err(format!(
                "the role name must be 1-64 letters, digits or + = , . @ _ -; {SHAPE}"
            ));
        }
        if path.len() > 511 || path.split('/').any(|seg| !seg.bytes().all(iam_name_byte)) {
            return Err(format!(
                "the role path must be letters, digits or + = , . @ _ - between '/'; {SHAPE}"
            ));
        }
        Ok(RoleArn {
            partition,
            account: account.to_string(),
            name: name.to_string(),
        })
    }
}

/// A refused role ARN: what is expected, never the value (it may be part of a URI that carries
/// secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RoleArnError(String);

impl FromStr for RoleArn {
    type Err = RoleArnError;

    /// `"arn:aws:iam::123456789012:role/ops/backup".parse::<RoleArn>()`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoleArn::parse(s).map_err(RoleArnError)
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:iam::{}:role/{}",
            self.partition.as_str(),
            self.account,
            self.name
        )
    }
}

fn iam_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b'_' | b'-')
}

/// One link of a role chain: the role, and the external id its trust policy asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsRole {
    pub arn: RoleArn,
    pub external_id: Option<Secret>,
}

/// Parse an `ASSUME_ROLE` value (already percent-decoded): comma-separated role ARNs, each
/// with an optional `;external_id=<id>`. An external id cannot hold ',' or ';' in this syntax.
pub(crate) fn parse_chain(param: &'static str, value: &str) -> Result<Vec<AwsRole>, UriError> {
    let mut chain = Vec::new();
    for (i, link) in value.split(',').enumerate() {
        let part = UriPart::Entry(param, i);
        if i >= MAX_CHAIN {
            return Err(UriError::new(
                UriPart::Param(param),
                format!("more than {MAX_CHAIN} roles in the chain"),
            ));
        }
        if link.is_empty() {
            return Err(UriError::new(
                part,
                "empty; expected a role ARN between commas",
            ));
        }
        let mut pieces = link.split(';');
        let arn = RoleArn::parse(pieces.next().unwrap_or_default())
            .map_err(|m| UriError::new(part.clone(), m))?;
        let mut external_id = None;
        for option in pieces {
            let Some(id) = option.strip_prefix("external_id=") else {
                return Err(UriError::new(
                    part,
                    "unknown option after ';'; expected ;external_id=<id>",
                ));
            };
            if external_id.is_some() {
                return Err(UriError::new(part, "external_id given more than once"));
            }
            if !(2..=1224).contains(&id.len())
                || !id
                    .bytes()
                    .all(|b| iam_name_byte(b) || matches!(b, b':' | b'/'))
            {
                return Err(UriError::new(
                    part,
                    "external_id must be 2-1224 letters, digits or + = . @ : / _ -",
                ));
            }
            external_id = Some(Secret::new(id.to_string()));
        }
        chain.push(AwsRole { arn, external_id });
    }
    Ok(chain)
}

/// An AWS region name (`us-east-1`, `cn-north-1`, `us-gov-west-1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsRegion(String);

impl AwsRegion {
    pub(crate) fn parse(param: &'static str, s: &str) -> Result<AwsRegion, UriError> {
        let ok = (4..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && s.as_bytes()[..2].iter().all(u8::is_ascii_lowercase)
            && s.as_bytes()[2] == b'-'
            && s.bytes().last().is_some_and(|b| b.is_ascii_digit())
            && !s.contains("--");
        if ok {
            Ok(AwsRegion(s.to_string()))
        } else {
            Err(UriError::param(
                param,
                "expected an AWS region name such as us-east-1",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The partition the region belongs to.
    pub fn partition(&self) -> Partition {
        if self.0.starts_with("cn-") {
            Partition::AwsCn
        } else if self.0.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else {
            Partition::Aws
        }
    }

    /// `<service>.<region>.<partition suffix>`.
    pub(crate) fn endpoint(&self, service: &str) -> String {
        format!("{service}.{}.{}", self.0, self.partition().dns_suffix())
    }
}

/// Refuse roles of a partition other than the region's: STS of one partition cannot assume
/// another's roles.
pub(crate) fn check_partitions(
    param: &'static str,
    roles: &[AwsRole],
    region: Option<&AwsRegion>,
) -> Result<(), UriError> {
    let Some(region) = region else {
        return Ok(());
    };
    for (i, role) in roles.iter().enumerate() {
        if role.arn.partition() != region.partition() {
            return Err(UriError::new(
                UriPart::Entry(param, i),
                format!(
                    "the role is in partition {} but the region is in {}; STS of one partition \
                     cannot assume another's roles",
                    role.arn.partition().as_str(),
                    region.partition().as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// The STS endpoint a chain is assumed at: regional when the region is known, else the global
/// one (aws partition) or the partition's first region's.
pub(crate) fn sts(region: Option<&AwsRegion>, first: &RoleArn) -> Destination {
    let host = match (region, first.partition()) {
        (Some(r), _) => r.endpoint("sts"),
        (None, Partition::Aws) => "sts.amazonaws.com".to_string(),
        (None, Partition::AwsCn) => "sts.cn-north-1.amazonaws.com.cn".to_string(),
        (None, Partition::AwsUsGov) => "sts.us-gov-west-1.amazonaws.com".to_string(),
    };
    Destination::name(host, 443, Purpose::AssumeRole)
}

/// The credentials an AWS chain starts from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AwsAuth {
    /// The environment's: instance profile, container or web identity, environment variables.
    Implicit,
    /// Keys given in the URI.
    Specified {
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
}

/// Validate an access key id (shown, not secret): 16-128 letters and digits.
pub(crate) fn access_key_id(param: &'static str, s: &str) -> Result<String, UriError> {
    if (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(s.to_string())
    } else {
        Err(UriError::param(
            param,
            "expected 16-128 letters and digits (an access key id such as AKIA...)",
        ))
    }
}

/// A role session name: 2-64 letters, digits or + = , . @ _ -.
pub(crate) fn session_name(param: &'static str, s: &str) -> Result<String, UriError> {
    if (2..=64).contains(&s.len()) && s.bytes().all(iam_name_byte) {
        Ok(s.to_string())
    } else {
        Err(UriError::param(
            param,
            "expected 2-64 letters, digits or + = , . @ _ -",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        let a = RoleArn::parse("arn:aws-us-gov:iam::123456789012:role/ops/backup").expect("ok");
        assert_eq!(a.partition(), Partition::AwsUsGov);
        assert_eq!(a.name(), "ops/backup");
        assert_eq!(
            a.to_string(),
            "arn:aws-us-gov:iam::123456789012:role/ops/backup"
        );
        for bad in [
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam::1234567890123:role/x",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:s3::123456789012:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws-xx:iam::123456789012:role/x",
            "arx:aws:iam::123456789012:role/x",
            "arn:aws:iam::123456789012:role/a b",
            "arn:aws:iam::123456789012",
        ] {
            assert!(RoleArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_str_is_parse_without_the_value() {
        let a: RoleArn = "arn:aws:iam::123456789012:role/backup".parse().expect("ok");
        assert_eq!(a.account(), "123456789012");
        let e = "arn:aws:iam::123456789012:role/secret value"
            .parse::<RoleArn>()
            .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("role name"), "{e}");
    }

    #[test]
    fn chains() {
        let c = parse_chain(
            "ASSUME_ROLE",
            "arn:aws:iam::123456789012:role/a;external_id=ext-1,arn:aws:iam::210987654321:role/b",
        )
        .expect("ok");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].external_id.as_ref().map(Secret::expose), Some("ext-1"));
        assert_eq!(c[1].external_id, None);
        let e = parse_chain("ASSUME_ROLE", "arn:aws:iam::123456789012:role/a,,x").unwrap_err();
        assert_eq!(e.part(), &UriPart::Entry("ASSUME_ROLE", 1));
    }
}
