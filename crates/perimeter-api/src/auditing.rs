//! Audit entries for API changes, with secrets redacted.

use perimeter_store::{AuditEntry, Principal};
use serde::Serialize;

/// Build an audit entry for an API change by `p`, with secrets in the payload redacted. It names
/// the caller's service account by id, which identifies it, and by name.
pub(crate) fn audit(p: &Principal, action: &str, payload: &impl Serialize) -> AuditEntry {
    let mut v = serde_json::to_value(payload).unwrap_or(serde_json::Value::Null);
    redact(&mut v);
    AuditEntry {
        service_account_id: p.service_account_id.clone(),
        ..AuditEntry::api(action, &p.service_account_name, v.to_string())
    }
}

/// Replace the value of every key that names a secret with "[REDACTED]".
pub fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                if ["secret", "token", "password", "credential", "private_key"]
                    .iter()
                    .any(|s| k.contains(s))
                {
                    *val = serde_json::Value::String("[REDACTED]".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}
