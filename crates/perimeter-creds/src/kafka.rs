//! `kafka://<broker>[:port][,<broker>[:port]...]?...`: a Kafka changefeed sink. Brokers
//! default to port 9092.
//!
//! As in CockroachDB: TLS parameters need `tls_enabled=true`; SASL parameters need
//! `sasl_enabled=true`; `sasl_mechanism` defaults to `PLAIN`. PLAIN and SCRAM need
//! `sasl_user` and `sasl_password`; OAUTHBEARER needs `sasl_client_id`, `sasl_client_secret`
//! and `sasl_token_url` (`sasl_scopes`, `sasl_grant_type` optional); AWS_MSK_IAM needs
//! `sasl_aws_region`, `sasl_aws_iam_role_arn` and `sasl_aws_iam_session_name`, and TLS (MSK's
//! IAM listeners accept nothing else). A parameter the chosen mechanism does not use is refused.

use crate::aws::{self, AwsRegion, RoleArn};
use crate::destination::{self, Destination, Endpoint, Host, HostPortError, Purpose};
use crate::error::{UriError, UriPart};
use crate::params::Params;
use crate::secret::Secret;
use crate::tls::{self, TLS_PARAMS, Tls};

/// A parsed `kafka://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUri {
    /// The bootstrap brokers, in the order written.
    pub brokers: Vec<(Host, u16)>,
    pub topic_name: Option<String>,
    pub topic_prefix: Option<String>,
    /// `Some` when `tls_enabled=true`.
    pub tls: Option<Tls>,
    /// `Some` when `sasl_enabled=true`.
    pub sasl: Option<Sasl>,
}

/// SASL authentication of a Kafka sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sasl {
    Plain {
        user: String,
        password: Secret,
    },
    ScramSha256 {
        user: String,
        password: Secret,
    },
    ScramSha512 {
        user: String,
        password: Secret,
    },
    OAuthBearer {
        client_id: String,
        client_secret: Secret,
        token_url: Endpoint,
        scopes: Vec<String>,
        grant_type: String,
    },
    AwsMskIam {
        region: AwsRegion,
        role_arn: RoleArn,
        session_name: String,
    },
}

impl Sasl {
    pub fn mechanism(&self) -> &'static str {
        match self {
            Sasl::Plain { .. } => "PLAIN",
            Sasl::ScramSha256 { .. } => "SCRAM-SHA-256",
            Sasl::ScramSha512 { .. } => "SCRAM-SHA-512",
            Sasl::OAuthBearer { .. } => "OAUTHBEARER",
            Sasl::AwsMskIam { .. } => "AWS_MSK_IAM",
        }
    }
}

const SASL_PARAMS: &[&str] = &[
    "sasl_mechanism",
    "sasl_user",
    "sasl_password",
    "sasl_client_id",
    "sasl_client_secret",
    "sasl_token_url",
    "sasl_scopes",
    "sasl_grant_type",
    "sasl_aws_region",
    "sasl_aws_iam_role_arn",
    "sasl_aws_iam_session_name",
];

pub(crate) fn parse(authority: &str, path: &str, mut params: Params) -> Result<KafkaUri, UriError> {
    if authority.is_empty() {
        return Err(UriError::new(
            UriPart::Authority,
            "no broker; expected kafka://host[:port][,host[:port]...]",
        ));
    }
    let mut brokers = Vec::new();
    for (i, b) in authority.split(',').enumerate() {
        let part = UriPart::Broker(i);
        if b.is_empty() {
            return Err(UriError::new(
                part,
                "empty; expected host[:port] between commas",
            ));
        }
        let broker = destination::host_port(b, 9092).map_err(|e| match e {
            HostPortError::Host(m) => UriError::new(part.clone(), format!("host: {m}")),
            HostPortError::Port(m) => UriError::new(part.clone(), format!("port: {m}")),
        })?;
        brokers.push(broker);
    }
    if !path.is_empty() && path != "/" {
        return Err(UriError::new(
            UriPart::Path,
            "a kafka:// URI names brokers only; put the topic in topic_name or topic_prefix",
        ));
    }
    let topic_name = params
        .take("topic_name")
        .map(|t| topic("topic_name", t))
        .transpose()?;
    let topic_prefix = params
        .take("topic_prefix")
        .map(|t| topic("topic_prefix", t))
        .transpose()?;
    let tls_enabled = params.take_bool("tls_enabled")?.unwrap_or(false);
    let tls = if tls_enabled {
        Some(tls::take(&mut params)?)
    } else {
        if let Some(p) = params.first_of(TLS_PARAMS) {
            return Err(UriError::param(p, "needs tls_enabled=true"));
        }
        None
    };
    let sasl_enabled = params.take_bool("sasl_enabled")?.unwrap_or(false);
    let sasl = if sasl_enabled {
        let sasl = sasl(&mut params)?;
        if matches!(sasl, Sasl::AwsMskIam { .. }) && !tls_enabled {
            return Err(UriError::param(
                "tls_enabled",
                "must be true with sasl_mechanism=AWS_MSK_IAM (MSK's IAM listeners accept TLS \
                 only)",
            ));
        }
        Some(sasl)
    } else {
        if let Some(p) = params.first_of(SASL_PARAMS) {
            return Err(UriError::param(p, "needs sasl_enabled=true"));
        }
        None
    };
    Ok(KafkaUri {
        brokers,
        topic_name,
        topic_prefix,
        tls,
        sasl,
    })
}

fn sasl(params: &mut Params) -> Result<Sasl, UriError> {
    let mechanism = params
        .take("sasl_mechanism")
        .unwrap_or_else(|| "PLAIN".to_string());
    let (name, required, optional): (&'static str, &[&'static str], &[&'static str]) =
        match mechanism.as_str() {
            "PLAIN" => ("PLAIN", &["sasl_user", "sasl_password"], &[]),
            "SCRAM-SHA-256" => ("SCRAM-SHA-256", &["sasl_user", "sasl_password"], &[]),
            "SCRAM-SHA-512" => ("SCRAM-SHA-512", &["sasl_user", "sasl_password"], &[]),
            "OAUTHBEARER" => (
                "OAUTHBEARER",
                &["sasl_client_id", "sasl_client_secret", "sasl_token_url"],
                &["sasl_scopes", "sasl_grant_type"],
            ),
            "AWS_MSK_IAM" => (
                "AWS_MSK_IAM",
                &[
                    "sasl_aws_region",
                    "sasl_aws_iam_role_arn",
                    "sasl_aws_iam_session_name",
                ],
                &[],
            ),
            _ => {
                return Err(UriError::param(
                    "sasl_mechanism",
                    "expected PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM",
                ));
            }
        };
    if let Some(p) = SASL_PARAMS[1..]
        .iter()
        .find(|p| params.has(p) && !required.contains(p) && !optional.contains(p))
    {
        return Err(UriError::param(
            p,
            format!(
                "not used by sasl_mechanism={name}, which takes {}",
                required
                    .iter()
                    .chain(optional)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Some(p) = required.iter().find(|p| !params.has(p)) {
        return Err(UriError::param(
            p,
            format!(
                "required with sasl_mechanism={name}{}",
                if mechanism == "PLAIN" && name == "PLAIN" {
                    " (the default mechanism)"
                } else {
                    ""
                }
            ),
        ));
    }
    let mut take = |n: &str| params.take(n).unwrap_or_default();
    Ok(match name {
        "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
            let user = take("sasl_user");
            let password = Secret::new(take("sasl_password"));
            match name {
                "PLAIN" => Sasl::Plain { user, password },
                "SCRAM-SHA-256" => Sasl::ScramSha256 { user, password },
                _ => Sasl::ScramSha512 { user, password },
            }
        }
        "OAUTHBEARER" => {
            let client_id = take("sasl_client_id");
            let client_secret = Secret::new(take("sasl_client_secret"));
            let token_url =
                destination::endpoint("sasl_token_url", &take("sasl_token_url"), false, true)?;
            let scopes_raw = take("sasl_scopes");
            let scopes: Vec<String> = if scopes_raw.is_empty() {
                Vec::new()
            } else {
                scopes_raw.split(',').map(str::to_string).collect()
            };
            if scopes.iter().any(String::is_empty) {
                return Err(UriError::param(
                    "sasl_scopes",
                    "an empty scope; expected scopes separated by single commas",
                ));
            }
            let grant = take("sasl_grant_type");
            let grant_type = if grant.is_empty() {
                "client_credentials".to_string()
            } else {
                grant
            };
            Sasl::OAuthBearer {
                client_id,
                client_secret,
                token_url,
                scopes,
                grant_type,
            }
        }
        _ => {
            let region = AwsRegion::parse("sasl_aws_region", &take("sasl_aws_region"))?;
            let role_arn = RoleArn::parse(&take("sasl_aws_iam_role_arn"))
                .map_err(|m| UriError::param("sasl_aws_iam_role_arn", m))?;
            if role_arn.partition() != region.partition() {
                return Err(UriError::param(
                    "sasl_aws_iam_role_arn",
                    "the role's partition is not sasl_aws_region's",
                ));
            }
            let session_name = aws::session_name(
                "sasl_aws_iam_session_name",
                &take("sasl_aws_iam_session_name"),
            )?;
            Sasl::AwsMskIam {
                region,
                role_arn,
                session_name,
            }
        }
    })
}

/// A topic name or prefix: 1-249 letters, digits, '.', '_' and '-' (Kafka's own rule).
fn topic(param: &'static str, t: String) -> Result<String, UriError> {
    if t.len() <= 249
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Ok(t)
    } else {
        Err(UriError::param(
            param,
            "expected 1-249 letters, digits, '.', '_' and '-'",
        ))
    }
}

impl KafkaUri {
    /// Every broker, then the token endpoint or STS the mechanism needs.
    pub fn destinations(&self) -> Vec<Destination> {
        let mut out: Vec<Destination> = self
            .brokers
            .iter()
            .map(|(host, port)| Destination {
                host: host.clone(),
                port: *port,
                purpose: Purpose::Broker,
            })
            .collect();
        match &self.sasl {
            Some(Sasl::OAuthBearer { token_url, .. }) => out.push(Destination {
                host: token_url.host.clone(),
                port: token_url.port,
                purpose: Purpose::Token,
            }),
            Some(Sasl::AwsMskIam {
                region, role_arn, ..
            }) => out.push(aws::sts(Some(region), role_arn)),
            _ => {}
        }
        out
    }
}
