//! API keys (generation, hashing, constant-time verification), the role matrix, and the
//! optional per-key rate limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use perimeter_store::{Principal, Protected, RoleBinding, Store};

use crate::error::{ApiError, ApiResult};

/// Prefix of every API key id; a secret is `<id>_<random>`.
pub const KEY_PREFIX: &str = "PRMTR";

/// A fresh key: (id, secret). The id is `PRMTR_<16 hex>`; the secret adds 43 base64url chars
/// (256 bits of entropy), so a plain SHA-256 of it is a sound stored verifier.
pub fn generate_key() -> (String, String) {
    let mut rng = rand::thread_rng();
    let mut idb = [0u8; 8];
    rng.fill_bytes(&mut idb);
    let id = format!("{KEY_PREFIX}_{}", hex(&idb));
    let mut sb = [0u8; 32];
    rng.fill_bytes(&mut sb);
    use base64::Engine;
    let secret = format!(
        "{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sb)
    );
    (id, secret)
}

pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The key id a secret claims to belong to, if it has the secret's shape.
pub fn key_id_of(secret: &str) -> Option<&str> {
    let mut parts = secret.splitn(3, '_');
    let (p, r, _) = (parts.next()?, parts.next()?, parts.next()?);
    if p != KEY_PREFIX || r.len() != 16 {
        return None;
    }
    Some(&secret[..p.len() + 1 + r.len()])
}

/// The key id under which a secret is stored: the id it carries, or for a secret of another
/// shape (an operator-chosen `PERIMETER_ADMIN_API_KEY`) an id derived from its hash.
pub fn key_id_for(secret: &str) -> String {
    match key_id_of(secret) {
        Some(id) => id.to_string(),
        None => format!("{KEY_PREFIX}_{}", &hash_secret(secret)[..16]),
    }
}

/// Prefix of gateway tokens: `PRGW.<gateway id>.<secret>`.
pub const GATEWAY_TOKEN_PREFIX: &str = "PRGW";

/// A fresh token for gateway `id` (256 bits of secret).
pub fn generate_gateway_token(id: &str) -> String {
    let mut sb = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut sb);
    use base64::Engine;
    format!(
        "{GATEWAY_TOKEN_PREFIX}.{id}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sb)
    )
}

/// Verify a gateway token; returns the gateway id.
pub async fn authenticate_gateway(store: &Store, token: &str) -> ApiResult<String> {
    let invalid = || ApiError::unauthenticated("invalid gateway token");
    let mut parts = token.splitn(3, '.');
    let (prefix, id, _) = (
        parts.next(),
        parts.next(),
        parts.next().ok_or_else(invalid)?,
    );
    if prefix != Some(GATEWAY_TOKEN_PREFIX) || token.len() > 256 {
        return Err(invalid());
    }
    let id = id.ok_or_else(invalid)?;
    let stored = store.gateway_token_hash(id).await?.ok_or_else(invalid)?;
    if bool::from(hash_secret(token).as_bytes().ct_eq(stored.as_bytes())) {
        Ok(id.to_string())
    } else {
        Err(invalid())
    }
}

/// Recently verified keys: (stored hash, principal, when read). Entries live `PRINCIPAL_TTL`;
/// every identity change made through this process clears the cache at once, so a key deleted
/// here stops working at once, and one deleted through another replica within the TTL.
#[derive(Default)]
pub struct PrincipalCache {
    entries: Mutex<HashMap<String, (String, Principal, Instant)>>,
}

/// How long a verified key is trusted without reading the store again.
pub const PRINCIPAL_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl PrincipalCache {
    fn get(&self, id: &str) -> Option<(String, Principal)> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|(_, _, at)| at.elapsed() < PRINCIPAL_TTL)
            .map(|(h, p, _)| (h.clone(), p.clone()))
    }

    fn put(&self, id: &str, hash: &str, p: &Principal) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(
            id.to_string(),
            (hash.to_string(), p.clone(), Instant::now()),
        );
    }

    /// Forget every verified key (after a change of keys, accounts or roles).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Verify a presented secret: look the key up by its id (cached briefly), compare hashes in
/// constant time.
pub async fn authenticate(
    store: &Store,
    cache: &PrincipalCache,
    secret: &str,
) -> ApiResult<Principal> {
    let invalid = || ApiError::unauthenticated("invalid API key");
    if secret.is_empty() || secret.len() > 512 {
        return Err(invalid());
    }
    let id = key_id_for(secret);
    let (stored, principal) = match cache.get(&id) {
        Some(hit) => hit,
        None => {
            let (stored, principal) = store.key_for_auth(&id).await?.ok_or_else(invalid)?;
            cache.put(&id, &stored, &principal);
            (stored, principal)
        }
    };
    let presented = hash_secret(secret);
    if bool::from(presented.as_bytes().ct_eq(stored.as_bytes())) {
        Ok(principal)
    } else {
        Err(invalid())
    }
}

pub const ORG_ADMIN: &str = "ORG_ADMIN";
pub const CLUSTER_ADMIN: &str = "CLUSTER_ADMIN";
pub const CLUSTER_OPERATOR_WRITER: &str = "CLUSTER_OPERATOR_WRITER";
pub const CLUSTER_DEVELOPER: &str = "CLUSTER_DEVELOPER";
pub const CLUSTER_CREATOR: &str = "CLUSTER_CREATOR";
pub const PLATFORM_OPERATOR: &str = "PLATFORM_OPERATOR";

/// Every role name a binding may carry.
pub const ROLES: &[&str] = &[
    ORG_ADMIN,
    CLUSTER_ADMIN,
    CLUSTER_OPERATOR_WRITER,
    CLUSTER_DEVELOPER,
    CLUSTER_CREATOR,
    PLATFORM_OPERATOR,
];

/// Roles bound at organization scope only: what they allow is the organization's (identity,
/// creating clusters), so a CLUSTER binding of one is refused, and would grant nothing.
pub const ORG_ROLES: &[&str] = &[ORG_ADMIN, CLUSTER_CREATOR];

/// What an operation needs (the role matrix of the API contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// list/get clusters
    ReadCluster,
    /// create cluster (organization scope)
    CreateCluster,
    UpdateCluster,
    DeleteCluster,
    /// get allowlist, list/get egress rules, trusted owners, ingress services/connections, egress-check
    ReadNetworking,
    /// list/get egress private endpoints
    ReadEndpoints,
    /// change allowlist, egress rules, traffic policy, egress private endpoints, private endpoint services/connections
    WriteNetworking,
    /// add/delete trusted owners
    TrustedOwners,
    /// create/edit/delete operator-managed rules
    OperatorRules,
    /// service accounts, api keys, roles, audit log (organization scope)
    Identity,
    /// endpoint services of the local provider (organization scope)
    EndpointServices,
    /// register endpoint-service backends on special addresses (loopback, private, CGNAT),
    /// which the address guard refuses otherwise: the platform's own network
    SpecialBackends,
    /// read where a cluster's workloads listen (what its ingress listeners forward to)
    ReadWorkload,
    /// set where a cluster's workloads listen: the platform wires them
    WriteWorkload,
    /// read a cluster's functional roles: whoever may read the cluster (a customer learns
    /// which role to trust) and the platform that sets them
    ReadCredentialRoles,
    /// set a cluster's functional roles: the platform's own roles
    WriteCredentialRoles,
    /// read a cluster's TLS inspection setting and its CA certificate: whoever may read the
    /// cluster (workloads must trust the CA)
    ReadTlsInspection,
    /// turn TLS inspection on or off: it hands the gateways a CA that workloads trust
    WriteTlsInspection,
}

impl Need {
    pub fn roles(self) -> &'static [&'static str] {
        use Need::*;
        match self {
            ReadCluster => &[
                ORG_ADMIN,
                CLUSTER_ADMIN,
                CLUSTER_OPERATOR_WRITER,
                CLUSTER_DEVELOPER,
            ],
            CreateCluster => &[CLUSTER_ADMIN, CLUSTER_CREATOR],
            UpdateCluster => &[CLUSTER_ADMIN, CLUSTER_OPERATOR_WRITER],
            DeleteCluster => &[CLUSTER_ADMIN],
            ReadNetworking => &[CLUSTER_ADMIN, CLUSTER_OPERATOR_WRITER, CLUSTER_DEVELOPER],
            ReadEndpoints | WriteNetworking => &[CLUSTER_ADMIN, CLUSTER_OPERATOR_WRITER],
            TrustedOwners => &[CLUSTER_ADMIN],
            OperatorRules => &[PLATFORM_OPERATOR],
            Identity => &[ORG_ADMIN],
            EndpointServices => &[ORG_ADMIN, CLUSTER_ADMIN],
            SpecialBackends => &[PLATFORM_OPERATOR],
            ReadWorkload => &[CLUSTER_ADMIN, PLATFORM_OPERATOR],
            WriteWorkload => &[PLATFORM_OPERATOR],
            ReadCredentialRoles => &[
                ORG_ADMIN,
                CLUSTER_ADMIN,
                CLUSTER_OPERATOR_WRITER,
                CLUSTER_DEVELOPER,
                PLATFORM_OPERATOR,
            ],
            WriteCredentialRoles => &[PLATFORM_OPERATOR],
            ReadTlsInspection => Need::ReadCluster.roles(),
            WriteTlsInspection => &[ORG_ADMIN, CLUSTER_ADMIN],
        }
    }

    /// Needs that only an organization-scope binding satisfies.
    fn org_only(self) -> bool {
        matches!(
            self,
            Need::CreateCluster | Need::Identity | Need::EndpointServices | Need::SpecialBackends
        )
    }
}

/// Does `p` hold a role of `need` covering `cluster` (or the organization)?
pub fn allowed(p: &Principal, need: Need, cluster: Option<&str>) -> bool {
    p.roles.iter().any(|b| covers(b, need, cluster))
}

fn covers(b: &RoleBinding, need: Need, cluster: Option<&str>) -> bool {
    if !need.roles().contains(&b.role.as_str()) {
        return false;
    }
    match b.resource_type.as_str() {
        "ORGANIZATION" => true,
        "CLUSTER" => {
            !need.org_only()
                && !ORG_ROLES.contains(&b.role.as_str())
                && cluster.is_some_and(|c| c == b.resource_id)
        }
        _ => false,
    }
}

/// 403 unless allowed, naming the roles that would be.
pub fn require(p: &Principal, need: Need, cluster: Option<&str>) -> ApiResult<()> {
    if allowed(p, need, cluster) {
        return Ok(());
    }
    let scope = match cluster {
        Some(c) if !need.org_only() => format!("on cluster {c} or the organization"),
        _ => "on the organization".to_string(),
    };
    Err(ApiError::forbidden(format!(
        "service account {} lacks a required role: one of {} {scope}",
        p.service_account_name,
        need.roles().join(", ")
    )))
}

/// Whether `p` is the platform: it holds PLATFORM_OPERATOR at organization scope. Only the
/// platform grants PLATFORM_OPERATOR (at any scope) and changes an account that holds it (its
/// roles, name, keys, existence): an ORG_ADMIN cannot make itself, or anyone, the platform.
pub fn is_platform(p: &Principal) -> bool {
    p.roles
        .iter()
        .any(|b| b.role == PLATFORM_OPERATOR && b.resource_type == "ORGANIZATION")
}

/// The accounts `p` may not change: those holding PLATFORM_OPERATOR, unless `p` is the platform.
pub fn protected(p: &Principal) -> Protected<'static> {
    Protected((!is_platform(p)).then_some(PLATFORM_OPERATOR))
}

/// 403 unless `p` may hand out every binding of `roles` (PLATFORM_OPERATOR: the platform only).
pub fn may_grant(p: &Principal, roles: &[RoleBinding]) -> ApiResult<()> {
    if is_platform(p) || roles.iter().all(|b| b.role != PLATFORM_OPERATOR) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "service account {} may not grant {PLATFORM_OPERATOR}: only a caller holding \
         {PLATFORM_OPERATOR} on the organization may",
        p.service_account_name
    )))
}

/// Clusters a principal may read: None means all.
pub fn readable_clusters(p: &Principal) -> Option<Vec<String>> {
    let mut ids = Vec::new();
    for b in &p.roles {
        if Need::ReadCluster.roles().contains(&b.role.as_str()) {
            if b.resource_type == "ORGANIZATION" {
                return None;
            }
            if b.resource_type == "CLUSTER" && !ORG_ROLES.contains(&b.role.as_str()) {
                ids.push(b.resource_id.clone());
            }
        }
    }
    Some(ids)
}

/// Per-key fixed one-second windows. Hand-written (a dozen lines) rather than a rate-limit
/// crate: the contract only asks for N per second per key with a Retry-After.
pub struct RateLimiter {
    per_second: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        RateLimiter {
            per_second,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Ok, or Err(seconds to wait).
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() > 100_000 {
            w.retain(|_, (start, _)| now.duration_since(*start).as_secs() < 1);
        }
        let entry = w.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0).as_secs() >= 1 {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_second {
            return Err(1);
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_carry_their_key_id() {
        let (id, secret) = generate_key();
        assert_eq!(key_id_of(&secret), Some(id.as_str()));
        assert!(secret.len() > 60);
        assert_eq!(key_id_of("nope"), None);
        assert_eq!(key_id_of("PRMTR_short_x"), None);
    }

    #[test]
    fn cluster_scope_does_not_grant_organization_needs() {
        let p = Principal {
            key_id: "k".into(),
            service_account_id: "s".into(),
            service_account_name: "n".into(),
            roles: vec![RoleBinding {
                role: CLUSTER_ADMIN.into(),
                resource_type: "CLUSTER".into(),
                resource_id: "c1".into(),
            }],
        };
        assert!(allowed(&p, Need::WriteNetworking, Some("c1")));
        assert!(!allowed(&p, Need::WriteNetworking, Some("c2")));
        assert!(!allowed(&p, Need::CreateCluster, None));
        assert!(!allowed(&p, Need::EndpointServices, None));
    }

    /// An organization role bound at CLUSTER scope (the API refuses such bindings; a store may
    /// hold one from before) grants nothing.
    #[test]
    fn organization_roles_at_cluster_scope_grant_nothing() {
        let p = Principal {
            key_id: "k".into(),
            service_account_id: "s".into(),
            service_account_name: "n".into(),
            roles: [ORG_ADMIN, CLUSTER_CREATOR]
                .map(|role| RoleBinding {
                    role: role.into(),
                    resource_type: "CLUSTER".into(),
                    resource_id: "c1".into(),
                })
                .to_vec(),
        };
        for need in [
            Need::ReadCluster,
            Need::WriteTlsInspection,
            Need::ReadCredentialRoles,
        ] {
            assert!(!allowed(&p, need, Some("c1")), "{need:?}");
        }
        assert_eq!(readable_clusters(&p), Some(vec![]));
        assert!(!is_platform(&p));
    }

    #[test]
    fn rate_limiter_refuses_beyond_the_budget() {
        let l = RateLimiter::new(2);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert_eq!(l.check("a"), Err(1));
        assert!(l.check("b").is_ok());
    }
}
