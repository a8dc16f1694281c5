//! Cluster names.

use crate::FieldError;
use crate::error::quote;

/// Validate a cluster name: 6-20 characters of `[0-9a-z-]`, not starting or ending with `-`.
/// Errors are on field `name`.
pub fn validate_cluster_name(name: &str) -> Result<(), FieldError> {
    let err = |what: &str| {
        FieldError::new(
            "name",
            format!(
                "cluster name {} {what}; use 6-20 lower-case letters, digits and '-', not starting or ending with '-', such as prod-eu-1",
                quote(name)
            ),
        )
    };
    let len = name.chars().count();
    if !(6..=20).contains(&len) {
        return Err(err(&format!("is {len} characters long")));
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
    {
        return Err(err(&format!("contains {ch:?}")));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(err("starts or ends with '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_cluster_name;

    #[test]
    fn cluster_names() {
        for ok in [
            "prod-1",
            "abcdef",
            "a-b-c-d-e-f-g-h-i-j0",
            "123456",
            "my--cluster",
        ] {
            assert_eq!(validate_cluster_name(ok), Ok(()), "{ok}");
        }
        let bad = [
            ("short", "is 5 characters long"),
            ("abcdefghijklmnopqrstu", "is 21 characters long"),
            ("", "is 0 characters long"),
            ("Prod-cluster", "contains 'P'"),
            ("prod_cluster", "contains '_'"),
            ("prod cluster", "contains ' '"),
            ("-prod-1", "starts or ends with '-'"),
            ("prod-1-", "starts or ends with '-'"),
            ("clüster", "contains 'ü'"),
        ];
        for (name, msg) in bad {
            let err = validate_cluster_name(name).unwrap_err();
            assert_eq!(err.field, "name");
            assert!(err.message.contains(msg), "{name}: {}", err.message);
        }
    }
}
