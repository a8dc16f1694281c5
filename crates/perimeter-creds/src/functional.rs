//! Functional roles: the role the platform puts first in every role chain a cluster's jobs
//! assume, one per purpose, as CockroachDB dedicated clusters do (`crl-dr-store-user-<cluster
//! id>` for backups, `crl-cdc-sink-user-<cluster id>` for changefeeds). A customer's role trusts
//! that role, so the customer needs to know its ARN.
//!
//! The platform configures a [`RoleTemplate`] per [`RolePurpose`]: a role ARN that may name the
//! cluster through the placeholders `{cluster_id}` and `{account_id}`. A template is checked
//! when it is parsed (placeholders known, braces matched, and expanded with a 36-character
//! cluster id it is a role ARN whose name fits IAM's 64 characters); [`RoleTemplate::expand`]
//! checks it again with a real cluster's identity.
//!
//! Templates are not secret (a role ARN is an identifier, shown to the customer), so an error
//! may name a placeholder it refuses; it never repeats the rest of the template.

use std::fmt;
use std::str::FromStr;

use crate::aws::{RoleArn, RoleArnError};

/// The purpose of backups and restores.
pub const BACKUP: &str = "backup";
/// The purpose of changefeeds.
pub const CHANGEFEED: &str = "changefeed";
/// The purposes the platform's jobs use; any other valid name is accepted too.
pub const WELL_KNOWN_PURPOSES: [&str; 2] = [BACKUP, CHANGEFEED];

/// Longest IAM role name (the part after the last `/`).
pub const MAX_ROLE_NAME: usize = 64;

/// Longest template accepted (the longest ARN IAM accepts).
const MAX_TEMPLATE: usize = 2048;

/// Longest purpose name.
const MAX_PURPOSE: usize = 32;

/// The identity a template is expanded with at parse time: a cluster id as long as a real
/// one (a UUID) and a 12-digit account.
const SAMPLE: ClusterIdentity<'static> = ClusterIdentity {
    cluster_id: "00000000-0000-0000-0000-000000000000",
    account_id: "123456789012",
};

/// Why a purpose or a template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunctionalRoleError {
    #[error(
        "a purpose is 1-{MAX_PURPOSE} characters of a-z, 0-9 and '-', starting with a letter \
         (backup, changefeed)"
    )]
    Purpose,
    #[error(
        "empty; expected a role ARN such as arn:aws:iam::123456789012:role/crl-dr-store-user-{{cluster_id}}"
    )]
    Empty,
    #[error("longer than {MAX_TEMPLATE} characters")]
    TooLong,
    #[error("unknown placeholder {0}; a template may use {{cluster_id}} and {{account_id}} only")]
    UnknownPlaceholder(String),
    #[error(
        "unmatched '{brace}' at character {at}; braces only enclose the placeholders \
         {{cluster_id}} and {{account_id}}"
    )]
    StrayBrace { brace: char, at: usize },
    #[error(
        "once expanded the role name is {len} characters (with a cluster id of {id_len}); \
         IAM allows at most {MAX_ROLE_NAME}"
    )]
    NameTooLong { len: usize, id_len: usize },
    #[error("once expanded, not an IAM role ARN: {0}")]
    NotRoleArn(#[from] RoleArnError),
}

/// What a functional role is for: `[a-z][a-z0-9-]{0,31}` ([`BACKUP`], [`CHANGEFEED`], or any
/// other name the platform's jobs use).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RolePurpose(String);

impl RolePurpose {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the [`WELL_KNOWN_PURPOSES`].
    pub fn is_well_known(&self) -> bool {
        WELL_KNOWN_PURPOSES.contains(&self.0.as_str())
    }
}

impl FromStr for RolePurpose {
    type Err = FunctionalRoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok = (1..=MAX_PURPOSE).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok {
            Ok(RolePurpose(s.to_string()))
        } else {
            Err(FunctionalRoleError::Purpose)
        }
    }
}

impl fmt::Display for RolePurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a template's placeholders stand for: the cluster's id and its `account_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterIdentity<'a> {
    pub cluster_id: &'a str,
    pub account_id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    ClusterId,
    AccountId,
}

/// A role ARN with placeholders `{cluster_id}` and `{account_id}`:
/// `arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTemplate {
    source: String,
    pieces: Vec<Piece>,
}

impl FromStr for RoleTemplate {
    type Err = FunctionalRoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(FunctionalRoleError::Empty);
        }
        if s.len() > MAX_TEMPLATE {
            return Err(FunctionalRoleError::TooLong);
        }
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.char_indices().peekable();
        let position = |byte: usize| s[..byte].chars().count();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' => {
                    let rest = &s[i + 1..];
                    let close = rest.find('}');
                    let open = rest.find('{');
                    let end = match (close, open) {
                        (Some(end), Some(o)) if o < end => {
                            return Err(FunctionalRoleError::StrayBrace {
                                brace: '{',
                                at: position(i),
                            });
                        }
                        (Some(end), _) => end,
                        (None, _) => {
                            return Err(FunctionalRoleError::StrayBrace {
                                brace: '{',
                                at: position(i),
                            });
                        }
                    };
                    let name = &rest[..end];
                    let piece = match name {
                        "cluster_id" => Piece::ClusterId,
                        "account_id" => Piece::AccountId,
                        _ => {
                            let shown: String = name.chars().take(40).collect();
                            let more = if shown.len() < name.len() { "..." } else { "" };
                            return Err(FunctionalRoleError::UnknownPlaceholder(format!(
                                "{{{shown}{more}}}"
                            )));
                        }
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                    // Skip the name and its closing brace.
                    while chars.next_if(|&(j, _)| j <= i + 1 + end).is_some() {}
                }
                '}' => {
                    return Err(FunctionalRoleError::StrayBrace {
                        brace: '}',
                        at: position(i),
                    });
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let template = RoleTemplate {
            source: s.to_string(),
            pieces,
        };
        template.expand(&SAMPLE)?;
        Ok(template)
    }
}

impl RoleTemplate {
    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the template names the cluster (`{cluster_id}`); one that does not gives every
    /// cluster the same role.
    pub fn names_cluster(&self) -> bool {
        self.pieces.contains(&Piece::ClusterId)
    }

    /// The template's text with its placeholders replaced; a role ARN when [`Self::expand`]
    /// accepts the same identity.
    pub fn render(&self, id: &ClusterIdentity<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::ClusterId => out.push_str(id.cluster_id),
                Piece::AccountId => out.push_str(id.account_id),
            }
        }
        out
    }

    /// The role ARN for a cluster: refused when, expanded, it is not a role ARN or its role
    /// name is longer than IAM allows.
    pub fn expand(&self, id: &ClusterIdentity<'_>) -> Result<RoleArn, FunctionalRoleError> {
        let arn = self.render(id);
        if let Some((_, resource)) = arn.split_once(":role/") {
            let len = resource.rsplit('/').next().unwrap_or_default().len();
            if len > MAX_ROLE_NAME {
                return Err(FunctionalRoleError::NameTooLong {
                    len,
                    id_len: id.cluster_id.len(),
                });
            }
        }
        Ok(arn.parse::<RoleArn>()?)
    }
}

impl fmt::Display for RoleTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests;
