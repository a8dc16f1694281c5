//! [`Secret`]: a credential value taken from a URI. It has no `Display`, and its `Debug` shows
//! only that a value is there, so that printing a parsed URI cannot leak it.

use std::fmt;

/// A secret parameter value (a key, a password, a token, an external id). Read it with
/// [`Secret::expose`], only where it is handed to the party it is meant for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}
