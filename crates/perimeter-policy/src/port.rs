//! Port lists of egress rules.

use crate::FieldError;

/// Most ports one rule may list.
pub const MAX_PORTS: usize = 100;

/// Validate a port list from the API (JSON integers): each must be 1-65535, else a
/// [`FieldError`] on `ports[i]`. Returns the ports deduplicated and sorted. An empty list is
/// valid and means every port (the rule validator warns about it).
pub fn validate_ports(ports: &[i64]) -> Result<Vec<u16>, FieldError> {
    if ports.len() > MAX_PORTS {
        return Err(FieldError::new(
            "ports",
            format!(
                "{} ports listed; a rule lists at most {MAX_PORTS}; split it into several rules",
                ports.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(ports.len());
    for (i, &port) in ports.iter().enumerate() {
        match u16::try_from(port) {
            Ok(p) if p != 0 => out.push(p),
            _ => {
                return Err(FieldError::new(
                    format!("ports[{i}]"),
                    format!("port {port} is out of range; a port is 1-65535"),
                ));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_table() {
        let ok: &[(&str, &[i64], &[u16])] = &[
            ("empty means all", &[], &[]),
            ("bounds", &[1, 65535], &[1, 65535]),
            (
                "dedup and sort",
                &[443, 80, 443, 8080, 80],
                &[80, 443, 8080],
            ),
        ];
        for (name, input, want) in ok {
            assert_eq!(validate_ports(input).as_deref(), Ok(*want), "{name}");
        }
        let bad: &[(&str, &[i64], &str, &str)] = &[
            ("zero", &[0], "ports[0]", "port 0 is out of range"),
            (
                "too big",
                &[443, 65536],
                "ports[1]",
                "port 65536 is out of range",
            ),
            (
                "negative",
                &[80, 443, -1],
                "ports[2]",
                "port -1 is out of range",
            ),
            ("huge", &[i64::MAX], "ports[0]", "1-65535"),
            ("too many", &[1; 101], "ports", "at most 100"),
        ];
        for (name, input, field, msg) in bad {
            let err = validate_ports(input).unwrap_err();
            assert_eq!(err.field, *field, "{name}");
            assert!(err.message.contains(msg), "{name}: {}", err.message);
        }
    }
}
