//! The gateway's registration as the control plane holds it: a gateway is registered for a
//! region of a cluster (`POST /api/v1/clusters/{id}/gateways {"region", "name"}`) and gets a
//! token. The region labels every decision event and metric of the gateway, so it comes from
//! the registration, not from a flag: every snapshot answer of the control plane carries the
//! registration of the gateway asking ([`crate::sync`]), and the gateway keeps it in its state
//! directory beside the last-known-good policy, so a restart without the control plane still
//! labels its decisions with the right region.
//!
//! A registration on disk is used only by the gateway it belongs to: the token
//! (`PRGW.<gateway id>.<secret>`) names the gateway id, and a registration of another id (a
//! state directory reused with a new token) is ignored until the control plane answers.

use std::path::Path;

/// Who the gateway is, as the control plane registered it: the registration every snapshot
/// answer carries, kept as that JSON.
pub use perimeter_wire::GatewayRegistration as Registration;

/// Where the gateway keeps its registration, in its state directory.
pub const REGISTRATION_FILE: &str = "registration.json";

/// A registration whose region is not the one the gateway was told to expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "gateway {name} ({id}) is registered in region {registered}, not in region {expected}: use a token registered for {expected}, or expect {registered}"
)]
pub struct RegionMismatch {
    pub id: String,
    pub name: String,
    /// The region of the registration.
    pub registered: String,
    /// The region the gateway was started for.
    pub expected: String,
}

/// `Err` when `expected` names another region than `reg`.
pub fn check_region(reg: &Registration, expected: Option<&str>) -> Result<(), RegionMismatch> {
    match expected {
        Some(expected) if expected != reg.region => Err(RegionMismatch {
            id: reg.id.clone(),
            name: reg.name.clone(),
            registered: reg.region.clone(),
            expected: expected.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The registration kept in `state_dir`, if there is a readable one for the gateway `gateway_id`
/// (the id its token names; none for a token that names none).
pub fn load(state_dir: &Path, gateway_id: Option<&str>) -> Option<Registration> {
    let path = state_dir.join(REGISTRATION_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let reg: Registration = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the kept registration is unreadable; waiting for the control plane's");
            return None;
        }
    };
    if Some(reg.id.as_str()) != gateway_id {
        tracing::info!(path = %path.display(), gateway = %reg.id, "the kept registration is another gateway's; waiting for the control plane's");
        return None;
    }
    Some(reg)
}

/// The gateway id a token (`PRGW.<id>.<secret>`) carries.
pub fn token_gateway_id(token: &str) -> Option<&str> {
    let mut parts = token.trim().splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("PRGW"), Some(id), Some(_)) if !id.is_empty() => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str, region: &str) -> Registration {
        Registration {
            id: id.into(),
            cluster_id: "c".into(),
            name: "edge-1".into(),
            region: region.into(),
        }
    }

    #[test]
    fn token_names_the_gateway() {
        for (token, id) in [
            ("PRGW.0b6c.secret", Some("0b6c")),
            ("PRGW.0b6c.sec.ret", Some("0b6c")),
            ("PRGW..secret", None),
            ("PRGW.0b6c", None),
            ("CCDB1.0b6c.secret", None),
            ("", None),
        ] {
            assert_eq!(token_gateway_id(token), id, "{token:?}");
        }
    }

    #[test]
    fn an_expected_region_must_be_the_registered_one() {
        let r = reg("g", "us-east-1");
        assert_eq!(check_region(&r, None), Ok(()));
        assert_eq!(check_region(&r, Some("us-east-1")), Ok(()));
        let e = check_region(&r, Some("eu-west-1")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("us-east-1") && text.contains("eu-west-1") && text.contains("edge-1"),
            "{text}"
        );
    }

    #[test]
    fn kept_registration_is_used_only_by_its_gateway() {
        let dir = std::env::temp_dir().join(format!(
            "perimeter-registration-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let r = reg("gw-a", "us-east-1");
        crate::sync::persist_registration(&dir, &r).unwrap();
        assert_eq!(load(&dir, token_gateway_id("PRGW.gw-a.secret")), Some(r));
        assert_eq!(load(&dir, token_gateway_id("PRGW.gw-b.secret")), None);
        assert_eq!(load(&dir, token_gateway_id("not a gateway token")), None);
        std::fs::write(dir.join(REGISTRATION_FILE), "{not json").unwrap();
        assert_eq!(load(&dir, token_gateway_id("PRGW.gw-a.secret")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
