//! `azure-blob://<container>/<path>?AZURE_ACCOUNT_NAME=...`: Azure Blob Storage. `azure://`
//! and `azure-storage://` are accepted as CockroachDB's deprecated spellings, with a warning.
//!
//! `AZURE_ACCOUNT_NAME` is always needed. `AUTH` defaults to `specified`: either
//! `AZURE_ACCOUNT_KEY`, or `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET` + `AZURE_TENANT_ID` (a
//! service principal). `AUTH=implicit` uses the environment's credentials (managed identity,
//! environment variables) and refuses all of those.

use base64::Engine;

use crate::destination::{Destination, Purpose, dns_name};
use crate::error::{UriError, UriPart};
use crate::params::Params;
use crate::s3::{AuthParam, auth_param};
use crate::secret::Secret;

/// A parsed `azure-blob://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureUri {
    pub container: String,
    pub path: String,
    pub account_name: String,
    pub environment: AzureEnvironment,
    pub auth: AzureAuth,
    /// The deprecated scheme the URI was written with (`azure`, `azure-storage`), if any.
    pub deprecated_scheme: Option<&'static str>,
}

/// The Azure cloud (`AZURE_ENVIRONMENT`, default public).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AzureEnvironment {
    Public,
    UsGovernment,
    China,
    Germany,
}

impl AzureEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            AzureEnvironment::Public => "AZUREPUBLICCLOUD",
            AzureEnvironment::UsGovernment => "AZUREUSGOVERNMENTCLOUD",
            AzureEnvironment::China => "AZURECHINACLOUD",
            AzureEnvironment::Germany => "AZUREGERMANCLOUD",
        }
    }

    fn blob_suffix(self) -> &'static str {
        match self {
            AzureEnvironment::Public => "blob.core.windows.net",
            AzureEnvironment::UsGovernment => "blob.core.usgovcloudapi.net",
            AzureEnvironment::China => "blob.core.chinacloudapi.cn",
            AzureEnvironment::Germany => "blob.core.cloudapi.de",
        }
    }

    fn login_host(self) -> &'static str {
        match self {
            AzureEnvironment::Public => "login.microsoftonline.com",
            AzureEnvironment::UsGovernment => "login.microsoftonline.us",
            AzureEnvironment::China => "login.chinacloudapi.cn",
            AzureEnvironment::Germany => "login.microsoftonline.de",
        }
    }
}

/// The credentials of an Azure URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureAuth {
    Implicit,
    AccountKey(Secret),
    ClientSecret {
        client_id: String,
        tenant_id: String,
        client_secret: Secret,
    },
}

pub(crate) fn parse(
    container: &str,
    path: &str,
    deprecated_scheme: Option<&'static str>,
    mut params: Params,
) -> Result<AzureUri, UriError> {
    let container = azure_container(container)?;
    let auth = auth_param(&mut params)?;
    let account_name = params.take("AZURE_ACCOUNT_NAME").ok_or_else(|| {
        UriError::param("AZURE_ACCOUNT_NAME", "required: the storage account's name")
    })?;
    if !(3..=24).contains(&account_name.len())
        || !account_name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(UriError::param(
            "AZURE_ACCOUNT_NAME",
            "expected 3-24 lower-case letters and digits",
        ));
    }
    let environment = match params.take("AZURE_ENVIRONMENT") {
        None => AzureEnvironment::Public,
        Some(e) => [
            AzureEnvironment::Public,
            AzureEnvironment::UsGovernment,
            AzureEnvironment::China,
            AzureEnvironment::Germany,
        ]
        .into_iter()
        .find(|env| env.as_str().eq_ignore_ascii_case(&e))
        .ok_or_else(|| {
            UriError::param(
                "AZURE_ENVIRONMENT",
                "expected AZUREPUBLICCLOUD, AZUREUSGOVERNMENTCLOUD, AZURECHINACLOUD or \
                 AZUREGERMANCLOUD",
            )
        })?,
    };
    const SECRETS: &[&str] = &[
        "AZURE_ACCOUNT_KEY",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
    ];
    let auth = match auth {
        AuthParam::Implicit => {
            if let Some(p) = params.first_of(SECRETS) {
                return Err(UriError::param(
                    p,
                    "not accepted with AUTH=implicit (the environment's credentials are used); \
                     drop it, or use AUTH=specified",
                ));
            }
            AzureAuth::Implicit
        }
        AuthParam::Absent | AuthParam::Specified => {
            let key = params.take("AZURE_ACCOUNT_KEY");
            let principal = ["AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"];
            match (key, params.first_of(&principal)) {
                (Some(_), Some(p)) => {
                    return Err(UriError::param(
                        p,
                        "not accepted together with AZURE_ACCOUNT_KEY; use the account key or \
                         a service principal, not both",
                    ));
                }
                (Some(k), None) => {
                    let decodes = base64::engine::general_purpose::STANDARD
                        .decode(&k)
                        .is_ok_and(|b| !b.is_empty());
                    if !decodes {
                        return Err(UriError::param(
                            "AZURE_ACCOUNT_KEY",
                            "expected the account key as Azure shows it (base64)",
                        ));
                    }
                    AzureAuth::AccountKey(Secret::new(k))
                }
                (None, None) => {
                    let default = if auth == AuthParam::Absent {
                        " (the default when AUTH is not given)"
                    } else {
                        ""
                    };
                    return Err(UriError::param(
                        "AZURE_ACCOUNT_KEY",
                        format!(
                            "required with AUTH=specified{default}: give AZURE_ACCOUNT_KEY, or \
                             AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID; or use \
                             AUTH=implicit"
                        ),
                    ));
                }
                (None, Some(_)) => {
                    let mut take = |name: &'static str| {
                        params.take(name).ok_or_else(|| {
                            UriError::param(
                                name,
                                "required: a service principal needs AZURE_CLIENT_ID, \
                                 AZURE_CLIENT_SECRET and AZURE_TENANT_ID",
                            )
                        })
                    };
                    let client_id = take("AZURE_CLIENT_ID")?;
                    let client_secret = take("AZURE_CLIENT_SECRET")?;
                    let tenant_id = take("AZURE_TENANT_ID")?;
                    if !is_guid(&client_id) {
                        return Err(UriError::param(
                            "AZURE_CLIENT_ID",
                            "expected the application (client) id, a GUID",
                        ));
                    }
                    if !is_guid(&tenant_id) && dns_name(&tenant_id).is_err() {
                        return Err(UriError::param(
                            "AZURE_TENANT_ID",
                            "expected the directory (tenant) id: a GUID or a domain name",
                        ));
                    }
                    AzureAuth::ClientSecret {
                        client_id,
                        tenant_id,
                        client_secret: Secret::new(client_secret),
                    }
                }
            }
        }
    };
    Ok(AzureUri {
        container,
        path: path.to_string(),
        account_name,
        environment,
        auth,
        deprecated_scheme,
    })
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl AzureUri {
    pub fn destinations(&self) -> Vec<Destination> {
        let mut out = vec![Destination::name(
            format!("{}.{}", self.account_name, self.environment.blob_suffix()),
            443,
            Purpose::Storage,
        )];
        if matches!(self.auth, AzureAuth::ClientSecret { .. }) {
            out.push(Destination::name(
                self.environment.login_host(),
                443,
                Purpose::Token,
            ));
        }
        out
    }
}

/// A container name: 3-63 lower-case letters, digits and single '-', starting and ending with
/// a letter or digit.
fn azure_container(c: &str) -> Result<String, UriError> {
    let err = |m: &str| UriError::new(UriPart::Container, m.to_string());
    if c.is_empty() {
        return Err(err("missing; expected azure-blob://<container>/<path>"));
    }
    if !(3..=63).contains(&c.len())
        || !c
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || c.starts_with('-')
        || c.ends_with('-')
        || c.contains("--")
    {
        return Err(err(
            "expected 3-63 lower-case letters, digits and single '-', starting and ending with \
             a letter or digit",
        ));
    }
    Ok(c.to_string())
}
