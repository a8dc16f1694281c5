//! `--provider-config FILE`: the platform's networking on AWS, per region (TOML).
//!
//! ```toml
//! endpoint_url = "http://127.0.0.1:5000"   # optional: an AWS-compatible server
//! [regions.us-east-1]
//! vpc_id = "vpc-0123456789abcdef0"
//! subnet_ids = ["subnet-0123456789abcdef0"]
//! security_group_ids = ["sg-0123456789abcdef0"]
//! nlb_arns = ["arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ingress/0123456789abcdef"]
//! ```
//!
//! A file is checked whole at start: unknown keys, malformed ids, an ARN of another region, a
//! repeated id. The first fault is refused with the key at fault (`regions.us-east-1.vpc_id`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The provider's configuration, checked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// An AWS-compatible server to call instead of AWS's own endpoints.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The platform's networking in each region where clusters run.
    pub regions: BTreeMap<String, RegionConfig>,
}

/// Where a region's interface endpoints live, and the load balancers in front of its private
/// ingress listeners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    /// Network load balancers whose targets are the region's private ingress listeners; a
    /// region without any has no private endpoint service.
    #[serde(default)]
    pub nlb_arns: Vec<String>,
}

/// Why a provider configuration was refused: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Dotted path of the key (`regions.us-east-1.subnet_ids[1]`), or `""` for the file itself.
    pub key: String,
    pub message: String,
}

fn fault(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl ProviderConfig {
    /// Parse and check a configuration file's text.
    pub fn parse(text: &str) -> Result<ProviderConfig, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| fault("", e.message().to_string()))?;
        let config: ProviderConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let mut key = e.path().to_string();
            if key == "." {
                key.clear();
            }
            let message = e.inner().message().to_string();
            // A missing key is named itself, not by the table that lacks it.
            if let Some(field) = message
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
            {
                key = if key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
            }
            fault(key, message)
        })?;
        config.check()?;
        Ok(config)
    }

    /// The region's configuration, if the file names it.
    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.get(name)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.endpoint_url {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)) {
                return Err(fault(
                    "endpoint_url",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if self.regions.is_empty() {
            return Err(fault(
                "regions",
                "no region is configured: add a [regions.<name>] table per region where clusters run",
            ));
        }
        let mut seen = BTreeMap::new();
        for (name, r) in &self.regions {
            let at = |k: &str| format!("regions.{name}.{k}");
            if !region_name(name) {
                return Err(fault(
                    format!("regions.{name}"),
                    format!("{name:?} is not an AWS region name (such as us-east-1)"),
                ));
            }
            id(&at("vpc_id"), &r.vpc_id, "vpc")?;
            if r.subnet_ids.is_empty() {
                return Err(fault(
                    at("subnet_ids"),
                    "at least one subnet is needed: interface endpoints place a network interface in each",
                ));
            }
            for (i, s) in r.subnet_ids.iter().enumerate() {
                id(&format!("{}[{i}]", at("subnet_ids")), s, "subnet")?;
            }
            for (i, s) in r.security_group_ids.iter().enumerate() {
                id(&format!("{}[{i}]", at("security_group_ids")), s, "sg")?;
            }
            for (i, arn) in r.nlb_arns.iter().enumerate() {
                nlb_arn(&format!("{}[{i}]", at("nlb_arns")), arn, name)?;
            }
            for (key, list) in [
                ("subnet_ids", &r.subnet_ids),
                ("security_group_ids", &r.security_group_ids),
                ("nlb_arns", &r.nlb_arns),
            ] {
                for (i, v) in list.iter().enumerate() {
                    if let Some(first) = seen.insert(v.clone(), format!("{}[{i}]", at(key))) {
                        return Err(fault(
                            format!("{}[{i}]", at(key)),
                            format!("{v} is already listed at {first}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-5`.
fn region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    (3..=4).contains(&parts.len())
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// `<prefix>-` and 8 or 17 lower-case hex digits, as EC2 ids are.
fn id(key: &str, value: &str, prefix: &str) -> Result<(), ConfigError> {
    let ok = value
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|hex| {
            matches!(hex.len(), 8 | 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(fault(
            key,
            format!("{value:?} is not a {prefix} id ({prefix}- and 8 or 17 hex digits)"),
        ))
    }
}

/// A network load balancer's ARN in `region`:
/// `arn:<partition>:elasticloadbalancing:<region>:<account>:loadbalancer/net/<name>/<id>`.
fn nlb_arn(key: &str, arn: &str, region: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        Err(fault(
            key,
            format!("{arn:?} is not a network load balancer ARN of {region}: {why}"),
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") {
        return bad("expected arn:aws:elasticloadbalancing:...");
    }
    if parts[2] != "elasticloadbalancing" {
        return bad("the service is not elasticloadbalancing");
    }
    if parts[3] != region {
        return bad(&format!("its region is {:?}", parts[3]));
    }
    if parts[4].len() != 12 || !parts[4].bytes().all(|b| b.is_ascii_digit()) {
        return bad("the account is not 12 digits");
    }
    // AWS itself refuses a load balancer that is not a network load balancer when the
    // service is created (with its own message); AWS-compatible servers name their kinds
    // differently, so only the shape is checked here.
    let resource: Vec<&str> = parts[5].split('/').collect();
    if resource.len() != 4
        || resource[0] != "loadbalancer"
        || resource[1..].iter().any(|p| p.is_empty())
    {
        return bad("expected loadbalancer/net/<name>/<id>");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
endpoint_url = "http://127.0.0.1:5000"
[regions.us-east-1]
vpc_id = "vpc-0123456789abcdef0"
subnet_ids = ["subnet-0123456789abcdef0", "subnet-1123456789abcdef0"]
security_group_ids = ["sg-0123456789abcdef0"]
nlb_arns = ["arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ingress/0123456789abcdef"]
[regions.eu-west-1]
vpc_id = "vpc-12345678"
subnet_ids = ["subnet-12345678"]
"#;

    #[test]
    fn the_documented_file_parses() {
        let c = ProviderConfig::parse(GOOD).unwrap();
        assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.regions.len(), 2);
        let r = c.region("us-east-1").unwrap();
        assert_eq!(r.subnet_ids.len(), 2);
        assert!(c.region("eu-west-1").unwrap().nlb_arns.is_empty());
        assert!(c.region("ap-south-1").is_none());
    }

    fn key_of(text: &str) -> String {
        ProviderConfig::parse(text).unwrap_err().key
    }

    #[test]
    fn each_fault_names_its_key() {
        let cases = [
            (
                GOOD.replace("vpc-0123456789abcdef0", "vpc-xyz"),
                "regions.us-east-1.vpc_id",
            ),
            (
                GOOD.replace("subnet-1123456789abcdef0", "sg-1123456789abcdef0"),
                "regions.us-east-1.subnet_ids[1]",
            ),
            (
                GOOD.replace("\"sg-0123456789abcdef0\"", "\"sg-0\""),
                "regions.us-east-1.security_group_ids[0]",
            ),
            (
                GOOD.replace(":us-east-1:123456789012:", ":us-west-2:123456789012:"),
                "regions.us-east-1.nlb_arns[0]",
            ),
            (
                GOOD.replace("loadbalancer/net/ingress/", "loadbalancer/net/"),
                "regions.us-east-1.nlb_arns[0]",
            ),
            (
                GOOD.replace("http://127.0.0.1:5000", "127.0.0.1:5000"),
                "endpoint_url",
            ),
            (
                GOOD.replace("[regions.eu-west-1]", "[regions.europe]"),
                "regions.europe",
            ),
            (
                GOOD.replace("subnet_ids = [\"subnet-12345678\"]", "subnet_ids = []"),
                "regions.eu-west-1.subnet_ids",
            ),
            (
                GOOD.replace(
                    "subnet_ids = [\"subnet-12345678\"]",
                    "subnet_ids = [\"subnet-0123456789abcdef0\"]",
                ),
                "regions.us-east-1.subnet_ids[0]",
            ),
            (
                GOOD.replace("vpc_id = \"vpc-12345678\"", "vpc_id = 7"),
                "regions.eu-west-1.vpc_id",
            ),
            (format!("{GOOD}\nsubnets = []\n"), "regions.eu-west-1"),
            ("endpoint_url = \"http://x\"\n".to_string(), "regions"),
            ("regions = {}\n".to_string(), "regions"),
        ];
        for (text, key) in cases {
            let err = ProviderConfig::parse(&text).unwrap_err();
            assert!(err.key.starts_with(key), "{key}: got {err}");
        }
        // A repeated subnet names where it was first listed.
        let dup = GOOD.replace(
            "subnet_ids = [\"subnet-12345678\"]",
            "subnet_ids = [\"subnet-0123456789abcdef0\"]",
        );
        let err = ProviderConfig::parse(&dup).unwrap_err();
        assert!(err.message.contains("already listed at regions."), "{err}");
        assert!(key_of("not toml [").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_parsed_or_refused(text in "\\PC{0,200}") {
            let _ = ProviderConfig::parse(&text);
        }
    }
}
