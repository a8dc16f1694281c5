//! Secrets at rest: the control plane's master key (`serve --secrets-key-file`) and the sealing
//! of what the store must not hold in clear (a cluster's inspection CA key).
//!
//! A sealed value is AES-256-GCM (`ring::aead`) under the master key with a fresh random 96-bit
//! nonce, written as base64 of `nonce || ciphertext || tag`. The associated data names what the
//! value belongs to (the cluster id), so a value copied into another cluster's row does not open.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of the master key.
pub const SECRETS_KEY_LEN: usize = 32;

/// Errors of the master key and of sealing.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} holds {len} bytes; a secrets key is exactly {SECRETS_KEY_LEN} bytes (every replica sharing a database must use the same file)"
    )]
    WrongSize { path: PathBuf, len: usize },
    #[error("the system random number generator failed")]
    Random,
    #[error("sealing failed")]
    Seal,
    /// Not base64, too short, or the tag does not verify: another key sealed it, it belongs to
    /// another owner, or it was altered.
    #[error(
        "cannot be opened with this secrets key (sealed under another key, for another owner, or altered)"
    )]
    Open,
}

/// The master key that seals secrets at rest. Its bytes are never shown.
pub struct SecretsKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(redacted)")
    }
}

impl SecretsKey {
    /// A key of exactly [`SECRETS_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != SECRETS_KEY_LEN {
            return None;
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).ok()?;
        Some(SecretsKey {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// A fresh random key, held only in memory.
    pub fn generate() -> Result<Self, SecretsError> {
        let bytes = random_key()?;
        Ok(Self::from_bytes(&bytes).expect("a key of the right size"))
    }

    /// The key in `path`; when the file does not exist, a new random key written there (mode
    /// 0600). A file that is not exactly [`SECRETS_KEY_LEN`] bytes is an error.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        let io = |source| SecretsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(mut f) => {
                let bytes = random_key()?;
                f.write_all(&bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
                tracing::info!(path = %path.display(), "created a new secrets key");
                return Ok(Self::from_bytes(&bytes).expect("a key of the right size"));
            }
            // Another process (or an earlier start) made it: read it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let bytes = std::fs::read(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path)
                && m.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "the secrets key file is readable by others than its owner; chmod 600 it");
            }
        }
        Self::from_bytes(&bytes).ok_or(SecretsError::WrongSize {
            path: path.to_path_buf(),
            len: bytes.len(),
        })
    }

    /// Seal `plaintext` for `owner`: base64 of `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8], owner: &str) -> Result<String, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Random)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretsError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Open what [`SecretsKey::seal`] sealed for `owner`.
    pub fn open(&self, sealed: &str, owner: &str) -> Result<Vec<u8>, SecretsError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed.trim())
            .map_err(|_| SecretsError::Open)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SecretsError::Open);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretsError::Open)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut buf)
            .map_err(|_| SecretsError::Open)?;
        Ok(plain.to_vec())
    }
}

fn random_key() -> Result<[u8; SECRETS_KEY_LEN], SecretsError> {
    let mut bytes = [0u8; SECRETS_KEY_LEN];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SecretsError::Random)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_owner() {
        let k = SecretsKey::generate().unwrap();
        let secret = b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
        let a = k.seal(secret, "cluster-a").unwrap();
        let b = k.seal(secret, "cluster-a").unwrap();
        assert_ne!(a, b, "a fresh nonce per seal");
        assert!(!a.contains("PRIVATE KEY"));
        assert_eq!(k.open(&a, "cluster-a").unwrap(), secret);
        assert!(
            matches!(k.open(&a, "cluster-b"), Err(SecretsError::Open)),
            "another owner's row"
        );
        let other = SecretsKey::generate().unwrap();
        assert!(
            matches!(other.open(&a, "cluster-a"), Err(SecretsError::Open)),
            "another key"
        );
        // Altered: flip one bit of the ciphertext.
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        raw[NONCE_LEN] ^= 1;
        let altered = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(matches!(
            k.open(&altered, "cluster-a"),
            Err(SecretsError::Open)
        ));
        assert!(matches!(
            k.open("AAAA", "cluster-a"),
            Err(SecretsError::Open)
        ));
        assert!(matches!(
            k.open("not base64!", "cluster-a"),
            Err(SecretsError::Open)
        ));
    }

    #[test]
    fn the_key_file_is_created_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets-key");
        let k1 = SecretsKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), SECRETS_KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = k1.seal(b"x", "c").unwrap();
        let k2 = SecretsKey::load_or_create(&path).unwrap();
        assert_eq!(k2.open(&sealed, "c").unwrap(), b"x", "the same key again");
        std::fs::write(&path, b"short").unwrap();
        let e = SecretsKey::load_or_create(&path).unwrap_err();
        assert!(matches!(e, SecretsError::WrongSize { len: 5, .. }), "{e}");
        assert!(e.to_string().contains("32 bytes"), "{e}");
    }
}
