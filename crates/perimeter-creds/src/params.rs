//! Query parameters: which ones each scheme takes, which carry secrets, and their collection
//! into a [`Params`] map with unknown, misspelt, duplicated and empty parameters refused.

use crate::error::{UriError, UriPart};
use crate::syntax::{self, decode};

pub(crate) const S3: &[&str] = &[
    "AUTH",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT",
    "ASSUME_ROLE",
];

pub(crate) const GS: &[&str] = &["AUTH", "CREDENTIALS", "BEARER_TOKEN", "ASSUME_ROLE"];

pub(crate) const AZURE: &[&str] = &[
    "AUTH",
    "AZURE_ACCOUNT_NAME",
    "AZURE_ACCOUNT_KEY",
    "AZURE_ENVIRONMENT",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
];

pub(crate) const KAFKA: &[&str] = &[
    "topic_name",
    "topic_prefix",
    "tls_enabled",
    "ca_cert",
    "client_cert",
    "client_key",
    "insecure_tls_skip_verify",
    "sasl_enabled",
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

pub(crate) const WEBHOOK: &[&str] = &[
    "ca_cert",
    "client_cert",
    "client_key",
    "insecure_tls_skip_verify",
];

/// Parameters whose values are secrets: always replaced by `redacted`.
pub const SECRET_PARAMS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "CREDENTIALS",
    "BEARER_TOKEN",
    "AZURE_ACCOUNT_KEY",
    "AZURE_CLIENT_SECRET",
    "client_key",
    "sasl_password",
    "sasl_client_secret",
];

/// Parameters whose values hold a URL: shown, unless the URL carries userinfo, a query or a
/// fragment (where credentials hide).
pub(crate) const URL_PARAMS: &[&str] = &["AWS_ENDPOINT", "sasl_token_url"];

/// Parameters whose value is a role chain: principals shown, `;external_id=` values redacted.
pub(crate) const CHAIN_PARAMS: &[&str] = &["ASSUME_ROLE"];

/// Every parameter of every scheme.
pub(crate) fn all_known() -> impl Iterator<Item = &'static str> {
    S3.iter()
        .chain(GS)
        .chain(AZURE)
        .chain(KAFKA)
        .chain(WEBHOOK)
        .copied()
}

/// The known parameter `name` is, exactly or ignoring ASCII case.
pub(crate) fn known_ignoring_case(name: &str) -> Option<&'static str> {
    all_known().find(|k| k.eq_ignore_ascii_case(name))
}

/// A URI's parameters, decoded, each known to its scheme and given once.
#[derive(Debug)]
pub(crate) struct Params {
    values: Vec<(&'static str, String)>,
}

impl Params {
    /// Collect the query of a `scheme://` URI that takes the parameters `known`.
    pub(crate) fn collect(
        scheme: &'static str,
        known: &'static [&'static str],
        query: Option<&str>,
    ) -> Result<Params, UriError> {
        let mut values: Vec<(&'static str, String)> = Vec::new();
        let Some(query) = query else {
            return Ok(Params { values });
        };
        if query.is_empty() {
            return Err(UriError::new(
                UriPart::Query,
                "a '?' with nothing after it; drop it or add NAME=VALUE parameters",
            ));
        }
        for raw in syntax::params(query)? {
            let position = raw.position;
            let name = decode(raw.name).map_err(|e| {
                UriError::new(
                    UriPart::Query,
                    format!("the name of parameter {position} has {}", e.text()),
                )
            })?;
            let Some(&name) = known.iter().find(|k| **k == name) else {
                return Err(unknown(scheme, known, &name, position));
            };
            if values.iter().any(|(n, _)| *n == name) {
                return Err(UriError::param(
                    name,
                    "given more than once; give each parameter once",
                ));
            }
            if raw.value.is_empty() {
                return Err(UriError::param(name, "empty value"));
            }
            let value = decode(raw.value)
                .map_err(|e| UriError::param(name, format!("the value has {}", e.text())))?;
            values.push((name, value));
        }
        Ok(Params { values })
    }

    /// Remove and return the value of `name`.
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        let i = self.values.iter().position(|(n, _)| *n == name)?;
        Some(self.values.remove(i).1)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.values.iter().any(|(n, _)| *n == name)
    }

    /// The first of `names` that is present.
    pub(crate) fn first_of(&self, names: &[&'static str]) -> Option<&'static str> {
        names.iter().copied().find(|n| self.has(n))
    }

    /// Remove and parse a boolean (Go's strconv.ParseBool forms, as CockroachDB reads them).
    pub(crate) fn take_bool(&mut self, name: &'static str) -> Result<Option<bool>, UriError> {
        let Some(v) = self.take(name) else {
            return Ok(None);
        };
        match v.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Some(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Some(false)),
            _ => Err(UriError::param(name, "expected true or false")),
        }
    }
}

/// The error for a parameter `scheme` does not take. Its name is shown only when it is a name
/// this crate knows (a misspelt secret could otherwise be echoed).
fn unknown(
    scheme: &'static str,
    known: &'static [&'static str],
    name: &str,
    position: usize,
) -> UriError {
    if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return UriError::param(
            k,
            format!("parameter {position} spells it in the wrong case; names are case-sensitive"),
        );
    }
    if let Some(k) = all_known().find(|k| *k == name) {
        return UriError::param(k, format!("not a parameter of {scheme}:// URIs"));
    }
    let hint = known
        .iter()
        .map(|k| {
            (
                edit_distance(&name.to_ascii_uppercase(), &k.to_ascii_uppercase()),
                k,
            )
        })
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default();
    UriError::new(
        UriPart::Query,
        format!(
            "parameter {position} is not a parameter of {scheme}:// URIs{hint}; expected one of {}",
            known.join(", ")
        ),
    )
}

/// Levenshtein distance, for the "did you mean" hint (names are short; bounded by length).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_and_url_param_is_known() {
        for p in SECRET_PARAMS.iter().chain(URL_PARAMS).chain(CHAIN_PARAMS) {
            assert!(all_known().any(|k| k == *p), "{p}");
        }
        assert_eq!(
            edit_distance("AWS_SECRET_ACCES_KEY", "AWS_SECRET_ACCESS_KEY"),
            1
        );
    }
}
