//! A cluster's TLS inspection CA: generated once, on the first enable, and kept (workloads trust
//! it). ECDSA P-256, `CN=Perimeter inspection CA <cluster id>, O=Perimeter`, a CA that may sign
//! leaves only (path length 0), for certificate and CRL signing, valid ten years.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// Errors of generating or reading an inspection CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("generating the inspection CA: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the system random number generator failed")]
    Random,
    #[error("not a PEM certificate: {0}")]
    Pem(String),
}

/// A freshly generated CA: its certificate and its private key (PKCS#8), both PEM.
pub struct InspectionCa {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for InspectionCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectionCa")
            .field("certificate_pem", &self.certificate_pem)
            .field("key_pem", &"(redacted)")
            .finish()
    }
}

/// The common name of a cluster's inspection CA.
pub fn common_name(cluster_id: &str) -> String {
    format!("Perimeter inspection CA {cluster_id}")
}

/// Generate the inspection CA of `cluster_id`, valid from an hour ago (clock skew) until ten
/// years from now.
pub fn generate(cluster_id: &str) -> Result<InspectionCa, CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name(cluster_id));
    dn.push(DnType::OrganizationName, "Perimeter");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now
        .replace_year(now.year() + 10)
        // 29 February: ten years of days instead.
        .unwrap_or(now + time::Duration::days(3652));
    // A random positive 128-bit serial (RFC 5280: at most 20 octets, positive).
    let mut serial = [0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| CaError::Random)?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&key)?;
    Ok(InspectionCa {
        certificate_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The SHA-256 fingerprint of a PEM certificate's DER, as openssl prints it:
/// upper-case hex pairs joined by `:`.
pub fn fingerprint_sha256(certificate_pem: &str) -> Result<String, CaError> {
    let pem = pem::parse(certificate_pem).map_err(|e| CaError::Pem(e.to_string()))?;
    if pem.tag() != "CERTIFICATE" {
        return Err(CaError::Pem(format!("a {} block", pem.tag())));
    }
    let digest = Sha256::digest(pem.contents());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::*;

    use super::*;

    #[test]
    fn the_ca_is_a_p256_ca_for_signing_leaves_only() {
        let ca = generate("0b2c1f4e-8f0a-4a57-9d6b-3f0e0c1d2e3f").unwrap();
        assert!(ca.key_pem.contains("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
        let pem = ::pem::parse(&ca.certificate_pem).unwrap();
        let (_, cert) = X509Certificate::from_der(pem.contents()).unwrap();
        let subject = cert.subject().to_string();
        assert!(
            subject.contains("CN=Perimeter inspection CA 0b2c1f4e-8f0a-4a57-9d6b-3f0e0c1d2e3f"),
            "{subject}"
        );
        assert!(subject.contains("O=Perimeter"), "{subject}");
        assert_eq!(cert.issuer(), cert.subject(), "self-signed");
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert!(!ku.digital_signature());
        assert_eq!(
            cert.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let v = cert.validity();
        let now = ::time::OffsetDateTime::now_utc();
        let before = v.not_before.to_datetime();
        let after = v.not_after.to_datetime();
        assert!(before < now - ::time::Duration::minutes(59));
        assert!(before > now - ::time::Duration::minutes(61));
        assert!(after > now + ::time::Duration::days(3650));
        assert!(after < now + ::time::Duration::days(3654));
        // The key is the certificate's.
        let key = KeyPair::from_pem(&ca.key_pem).unwrap();
        assert_eq!(
            key.public_key_raw(),
            cert.public_key().subject_public_key.data.as_ref()
        );
        // Each CA is new.
        let again = generate("0b2c1f4e-8f0a-4a57-9d6b-3f0e0c1d2e3f").unwrap();
        assert_ne!(again.certificate_pem, ca.certificate_pem);
    }

    #[test]
    fn the_fingerprint_reads_like_openssl() {
        let ca = generate("c").unwrap();
        let fp = fingerprint_sha256(&ca.certificate_pem).unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.split(':').all(|p| {
            p.len() == 2
                && p.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        }));
        // openssl's own answer, where it is installed.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &ca.certificate_pem).unwrap();
        if let Ok(out) = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&path)
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success());
            assert!(text.trim().ends_with(&format!("={fp}")), "{text} vs {fp}");
        }
        assert!(fingerprint_sha256("nope").is_err());
        assert!(fingerprint_sha256(&ca.key_pem).is_err());
    }
}
