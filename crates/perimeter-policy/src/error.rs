//! The one error shape of validation at the API boundary.

/// Every validation failure at the API boundary: the JSON field path and a message that says
/// what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `destination`, `ports[2]`, `paths[0]`.
    pub field: String,
    /// User-facing message: what is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// A validation error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Quote user input for an error message: escaped like a Rust string (so control characters are
/// visible) and cut after 80 characters so a hostile input cannot blow up a response body.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}
