//! `s3://<bucket>/<path>?AUTH=...`: Amazon S3 and S3-compatible stores (`AWS_ENDPOINT`).
//!
//! As in CockroachDB: `AUTH` defaults to `specified`, which needs `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN` optional); `AUTH=implicit` takes the
//! environment's credentials and refuses keys. `ASSUME_ROLE` chains roles from either, and must
//! say which with an explicit `AUTH`.

use crate::aws::{self, AwsAuth, AwsRegion, AwsRole};
use crate::destination::{self, Destination, Endpoint, Purpose};
use crate::error::{UriError, UriPart};
use crate::params::Params;

/// A parsed `s3://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    /// The object prefix, as written (empty or starting with '/').
    pub path: String,
    pub auth: AwsAuth,
    pub region: Option<AwsRegion>,
    /// An S3-compatible endpoint replacing AWS's.
    pub endpoint: Option<Endpoint>,
    /// Roles assumed in order, starting from `auth`'s credentials.
    pub assume_role: Vec<AwsRole>,
}

/// `AUTH` as written: absent, `implicit` or `specified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthParam {
    Absent,
    Implicit,
    Specified,
}

pub(crate) fn auth_param(params: &mut Params) -> Result<AuthParam, UriError> {
    match params.take("AUTH").as_deref() {
        None => Ok(AuthParam::Absent),
        Some("implicit") => Ok(AuthParam::Implicit),
        Some("specified") => Ok(AuthParam::Specified),
        Some(_) => Err(UriError::param("AUTH", "expected implicit or specified")),
    }
}

/// `ASSUME_ROLE` needs an explicit `AUTH`: the credentials that assume the first role.
pub(crate) fn chain_needs_auth(auth: AuthParam, params: &Params) -> Result<(), UriError> {
    if auth == AuthParam::Absent && params.has("ASSUME_ROLE") {
        return Err(UriError::param(
            "ASSUME_ROLE",
            "needs AUTH=implicit or AUTH=specified, naming the credentials that assume the \
             first role",
        ));
    }
    Ok(())
}

pub(crate) fn parse(bucket: &str, path: &str, mut params: Params) -> Result<S3Uri, UriError> {
    let bucket = s3_bucket(bucket)?;
    let auth = auth_param(&mut params)?;
    chain_needs_auth(auth, &params)?;
    const KEYS: &[&str] = &[
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ];
    let auth = match auth {
        AuthParam::Implicit => {
            if let Some(k) = params.first_of(KEYS) {
                return Err(UriError::param(
                    k,
                    "not accepted with AUTH=implicit (the environment's credentials are used); \
                     drop it, or use AUTH=specified",
                ));
            }
            AwsAuth::Implicit
        }
        AuthParam::Absent | AuthParam::Specified => {
            let default = if auth == AuthParam::Absent {
                " (the default when AUTH is not given)"
            } else {
                ""
            };
            let missing = |name: &'static str| {
                UriError::param(
                    name,
                    format!("required with AUTH=specified{default}; or use AUTH=implicit"),
                )
            };
            let id = params
                .take("AWS_ACCESS_KEY_ID")
                .ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?;
            let secret = params
                .take("AWS_SECRET_ACCESS_KEY")
                .ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?;
            AwsAuth::Specified {
                access_key_id: aws::access_key_id("AWS_ACCESS_KEY_ID", &id)?,
                secret_access_key: crate::Secret::new(secret),
                session_token: params.take("AWS_SESSION_TOKEN").map(crate::Secret::new),
            }
        }
    };
    let region = params
        .take("AWS_REGION")
        .map(|r| AwsRegion::parse("AWS_REGION", &r))
        .transpose()?;
    let endpoint = params
        .take("AWS_ENDPOINT")
        .map(|e| destination::endpoint("AWS_ENDPOINT", &e, true, false))
        .transpose()?;
    let assume_role = match params.take("ASSUME_ROLE") {
        Some(v) => aws::parse_chain("ASSUME_ROLE", &v)?,
        None => Vec::new(),
    };
    aws::check_partitions("ASSUME_ROLE", &assume_role, region.as_ref())?;
    Ok(S3Uri {
        bucket,
        path: path.to_string(),
        auth,
        region,
        endpoint,
        assume_role,
    })
}

impl S3Uri {
    /// The storage endpoint (virtual-hosted style, or `AWS_ENDPOINT`), then STS when a role
    /// chain is assumed.
    pub fn destinations(&self) -> Vec<Destination> {
        let storage = match (&self.endpoint, &self.region) {
            (Some(e), _) => Destination {
                host: e.host.clone(),
                port: e.port,
                purpose: Purpose::Storage,
            },
            (None, Some(r)) => Destination::name(
                format!("{}.{}", self.bucket, r.endpoint("s3")),
                443,
                Purpose::Storage,
            ),
            (None, None) => Destination::name(
                format!("{}.s3.amazonaws.com", self.bucket),
                443,
                Purpose::Storage,
            ),
        };
        let mut out = vec![storage];
        if let Some(first) = self.assume_role.first() {
            out.push(aws::sts(self.region.as_ref(), &first.arn));
        }
        out
    }
}

/// An S3 bucket name: 3-63 lower-case letters, digits, '.' and '-', starting and ending with a
/// letter or digit, no "..", not shaped like an IP address.
fn s3_bucket(b: &str) -> Result<String, UriError> {
    let err = |m: &str| UriError::new(UriPart::Bucket, m.to_string());
    if b.is_empty() {
        return Err(err("missing; expected s3://<bucket>/<path>"));
    }
    if !(3..=63).contains(&b.len()) {
        return Err(err("must be 3-63 characters"));
    }
    if b.contains(':') {
        return Err(err(
            "':' is not allowed (a port?); to name an S3-compatible server use AWS_ENDPOINT",
        ));
    }
    if !b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return Err(err("expected lower-case letters, digits, '.' and '-'"));
    }
    let first_last_ok = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok(b.bytes().next()) || !first_last_ok(b.bytes().last()) {
        return Err(err("must start and end with a letter or digit"));
    }
    if b.contains("..") {
        return Err(err("'..' is not allowed"));
    }
    if b.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(err("must not be shaped like an IP address"));
    }
    Ok(b.to_string())
}
