//! The HTTP side of the client commands: requests with the API key, google.rpc.Status errors,
//! pagination, and lookups of clusters by name.

use std::fmt;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::Value;

use super::Secret;

/// Why a client command failed; each kind has its exit status.
#[derive(Debug)]
pub enum Failure {
    /// The API answered with an error (google.rpc.Status when it could be read).
    Api {
        status: u16,
        message: String,
        violations: Vec<FieldViolation>,
    },
    /// A name given on the command line matched no resource, or more than one.
    Lookup(String),
    /// The answer was not what the API promises (not JSON, a key missing).
    Response(String),
    /// The API could not be reached at all.
    Unreachable { url: String, cause: String },
    /// The command line asks for something refused before any request.
    Usage(String),
    /// A value judged locally and refused (an invalid storage or sink URI).
    Invalid(String),
}

#[derive(Debug, Deserialize)]
pub struct FieldViolation {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub description: String,
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Api { .. }
            | Failure::Lookup(_)
            | Failure::Response(_)
            | Failure::Invalid(_) => 1,
            Failure::Unreachable { .. } | Failure::Usage(_) => 2,
        }
    }
}

/// The message as printed on stderr, one `error:` line plus indented detail lines.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Api {
                status,
                message,
                violations,
            } => {
                writeln!(f, "error: {message}")?;
                for v in violations {
                    if v.description.is_empty() || v.description == *message {
                        writeln!(f, "  field: {}", v.field)?;
                    } else {
                        writeln!(f, "  field: {}: {}", v.field, v.description)?;
                    }
                }
                match status {
                    401 => writeln!(
                        f,
                        "  hint: check the API key (--api-key or PERIMETER_API_KEY)"
                    ),
                    409 if message.contains("lock") => writeln!(
                        f,
                        "  hint: a networking operation is in flight on this cluster; retry once it settles"
                    ),
                    _ => Ok(()),
                }
            }
            Failure::Lookup(m) | Failure::Response(m) | Failure::Usage(m) | Failure::Invalid(m) => {
                writeln!(f, "error: {m}")
            }
            Failure::Unreachable { url, cause } => {
                writeln!(f, "error: cannot reach the Perimeter API at {url}: {cause}")
            }
        }
    }
}

/// google.rpc.Status as the API sends it.
#[derive(Debug, Deserialize)]
struct Status {
    message: String,
    #[serde(default)]
    details: Vec<Value>,
}

/// A connection to the API: base URL plus the key on every request.
pub struct Api {
    http: reqwest::Client,
    base: Url,
}

impl Api {
    pub fn new(url: &str, key: &Secret) -> Result<Api, Failure> {
        let base = Url::parse(url)
            .map_err(|e| Failure::Usage(format!("--url {url:?} is not a URL: {e}")))?;
        match base.scheme() {
            "http" => {}
            "https" => {
                return Err(Failure::Usage(format!(
                    "--url {url}: this build of perimeter speaks plain http:// only; https needs a later build with TLS support"
                )));
            }
            s => {
                return Err(Failure::Usage(format!(
                    "--url {url}: scheme {s:?} is not http"
                )));
            }
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(Failure::Usage(format!(
                "--url {url:?} must look like http://host:port"
            )));
        }
        let mut bearer =
            HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                Failure::Usage("the API key holds characters an HTTP header cannot carry".into())
            })?;
        bearer.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, bearer);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("perimeter-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Api { http, base })
    }

    /// `base` + `/api/v1/` + the segments, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let url = self.url(segments);
        let mut req = self.http.request(method, url.clone());
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Response(format!(
                    "{url} answered {status} with a body that is not JSON: {e}"
                ))
            });
        }
        Err(match serde_json::from_slice::<Status>(&bytes) {
            Ok(s) => Failure::Api {
                status: status.as_u16(),
                violations: field_violations(&s.details),
                message: s.message,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let text: String = text.trim().chars().take(200).collect();
                Failure::Api {
                    status: status.as_u16(),
                    message: if text.is_empty() {
                        format!("{url} answered {status}")
                    } else {
                        format!("{url} answered {status}: {text}")
                    },
                    violations: vec![],
                }
            }
        })
    }

    /// A failure to talk to the server at all, naming the base URL and the innermost cause.
    fn unreachable(&self, e: &reqwest::Error) -> Failure {
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let cause = if e.is_timeout() {
            format!("timed out ({cause})")
        } else {
            cause.to_string()
        };
        Failure::Unreachable {
            url: self.base.to_string(),
            cause,
        }
    }

    pub async fn get(&self, segments: &[&str]) -> Result<Value, Failure> {
        self.send(Method::GET, segments, &[], None).await
    }

    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value, Failure> {
        self.send(Method::POST, segments, &[], Some(body)).await
    }

    pub async fn put(&self, segments: &[&str], body: &Value) -> Result<Value, Failure> {
        self.send(Method::PUT, segments, &[], Some(body)).await
    }

    pub async fn patch(&self, segments: &[&str], body: &Value) -> Result<Value, Failure> {
        self.send(Method::PATCH, segments, &[], Some(body)).await
    }

    pub async fn delete(&self, segments: &[&str]) -> Result<Value, Failure> {
        self.send(Method::DELETE, segments, &[], None).await
    }

    /// Every item of a list route: follows `pagination.next_page` until it is `""` or absent.
    /// Answers the items under `key` of all pages and the last page (for keys like
    /// `propagating`).
    pub async fn list(
        &self,
        segments: &[&str],
        key: &str,
        page_size: u32,
        extra_query: &[(&str, &str)],
    ) -> Result<(Vec<Value>, Value), Failure> {
        let limit = page_size.to_string();
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("pagination.limit", limit.as_str())];
            query.extend_from_slice(extra_query);
            if !token.is_empty() {
                query.push(("pagination.page", token.as_str()));
            }
            let mut page = self.send(Method::GET, segments, &query, None).await?;
            match page.get_mut(key).map(Value::take) {
                Some(Value::Array(batch)) => items.extend(batch),
                _ => {
                    return Err(Failure::Response(format!(
                        "the list answer from {} has no {key:?} array",
                        self.url(segments)
                    )));
                }
            }
            let next = page
                .pointer("/pagination/next_page")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if next.is_empty() {
                return Ok((items, page));
            }
            if next == token {
                return Err(Failure::Response(format!(
                    "{} answered the same next_page token twice",
                    self.url(segments)
                )));
            }
            token = next.to_string();
        }
    }

    /// A cluster id from an id or a name (names are looked up in `GET /api/v1/clusters`).
    pub async fn cluster_id(&self, id_or_name: &str) -> Result<String, Failure> {
        if uuid::Uuid::parse_str(id_or_name).is_ok() {
            return Ok(id_or_name.to_string());
        }
        let (clusters, _) = self.list(&["clusters"], "clusters", 500, &[]).await?;
        let ids = ids_named(&clusters, id_or_name);
        match ids.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err(Failure::Lookup(format!(
                "no cluster is named {id_or_name:?} (`perimeter clusters list` shows them)"
            ))),
            many => Err(Failure::Lookup(format!(
                "{} clusters are named {id_or_name:?} ({}); pass the id instead",
                many.len(),
                many.join(", ")
            ))),
        }
    }

    /// An endpoint service id from an id or a service name (`service_name`, unique).
    pub async fn service_id(&self, id_or_name: &str) -> Result<String, Failure> {
        if uuid::Uuid::parse_str(id_or_name).is_ok() {
            return Ok(id_or_name.to_string());
        }
        let (services, _) = self
            .list(&["endpoint-services"], "endpoint_services", 500, &[])
            .await?;
        let ids: Vec<String> = services
            .iter()
            .filter(|v| v.get("service_name").and_then(Value::as_str) == Some(id_or_name))
            .filter_map(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        match ids.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err(Failure::Lookup(format!(
                "no endpoint service is named {id_or_name:?} (`perimeter endpoint-services list` shows them)"
            ))),
            many => Err(Failure::Lookup(format!(
                "{} endpoint services are named {id_or_name:?} ({}); pass the id instead",
                many.len(),
                many.join(", ")
            ))),
        }
    }

    /// A rule id from an id or a name (unique per cluster).
    pub async fn rule_id(&self, cluster_id: &str, id_or_name: &str) -> Result<String, Failure> {
        if uuid::Uuid::parse_str(id_or_name).is_ok() {
            return Ok(id_or_name.to_string());
        }
        let (rules, _) = self
            .list(&rules_path(cluster_id), "rules", 500, &[])
            .await?;
        let ids = ids_named(&rules, id_or_name);
        match ids.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err(Failure::Lookup(format!(
                "cluster {cluster_id} has no egress rule named {id_or_name:?} (`perimeter egress-rules list` shows them)"
            ))),
            many => Err(Failure::Lookup(format!(
                "{} egress rules are named {id_or_name:?} ({}); pass the id instead",
                many.len(),
                many.join(", ")
            ))),
        }
    }
}

/// Path segments of a cluster's egress rules.
pub fn rules_path(cluster_id: &str) -> [&str; 4] {
    ["clusters", cluster_id, "networking", "egress-rules"]
}

fn ids_named(items: &[Value], name: &str) -> Vec<String> {
    items
        .iter()
        .filter(|v| v.get("name").and_then(Value::as_str) == Some(name))
        .filter_map(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The field violations of a google.rpc.BadRequest detail.
fn field_violations(details: &[Value]) -> Vec<FieldViolation> {
    details
        .iter()
        .filter(|d| {
            d.get("@type").and_then(Value::as_str)
                == Some("type.googleapis.com/google.rpc.BadRequest")
        })
        .filter_map(|d| d.get("field_violations").cloned())
        .filter_map(|v| serde_json::from_value::<Vec<FieldViolation>>(v).ok())
        .flatten()
        .collect()
}

/// Deserialize an API value into a view type for a table.
pub fn view<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, Failure> {
    T::deserialize(v)
        .map_err(|e| Failure::Response(format!("unexpected {what} in the answer: {e}")))
}

/// The value under `key` of an answer (`{"Rule": ...}`), or a clear failure.
pub fn member<'a>(v: &'a Value, key: &str) -> Result<&'a Value, Failure> {
    v.get(key)
        .ok_or_else(|| Failure::Response(format!("the answer has no {key:?} key: {v}")))
}
