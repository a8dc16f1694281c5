//! Leaves minted from a CA made here, checked by a real rustls client handshake in memory.

use std::sync::Arc;

use perimeter_policy::Inspection;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls::pki_types::ServerName;

use super::*;

/// A CA as the control plane makes one: its PEM certificate and PKCS#8 key.
fn ca() -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "Perimeter inspection CA test");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn inspection(ca: &(String, String)) -> Inspection {
    Inspection {
        ca_certificate: ca.0.clone(),
        ca_key: ca.1.clone(),
        never_inspect: vec!["pinned.example.com".parse().unwrap()],
    }
}

/// A client trusting only `ca_pem` completes a handshake with the inspector's server side for
/// `name`, and the certificate it saw is for that name.
async fn handshake(inspector: &Inspector, ca_pem: &str, name: &str) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client =
        rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = tokio_rustls::TlsAcceptor::from(inspector.server.clone());
    let serve = tokio::spawn(async move { server.accept(b).await.map(|_| ()) });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let result = connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), a)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let _ = serve.await;
    result
}

#[tokio::test]
async fn leaves_for_any_name_verify_against_the_cluster_ca_only() {
    let ca = ca();
    let state = InspectionState::with_extra_roots(None).unwrap();
    let inspector = state.inspector(&inspection(&ca)).unwrap();
    handshake(&inspector, &ca.0, "storage.example.com")
        .await
        .expect("a client trusting the cluster CA accepts the leaf");
    // Another CA's client refuses it.
    let other = self::ca();
    let e = handshake(&inspector, &other.0, "storage.example.com")
        .await
        .expect_err("another CA's client refuses");
    assert!(e.contains("certificate"), "{e}");
    // The same inspector while the CA is the same; a new one for a new CA.
    assert!(Arc::ptr_eq(
        &inspector,
        &state.inspector(&inspection(&ca)).unwrap()
    ));
    assert!(!Arc::ptr_eq(
        &inspector,
        &state.inspector(&inspection(&other)).unwrap()
    ));
    assert!(inspection(&ca).never_inspects(&"pinned.example.com".parse().unwrap()));
}

#[test]
fn leaves_are_cached_per_name() {
    let ca = ca();
    let state = InspectionState::with_extra_roots(None).unwrap();
    let inspector = state.inspector(&inspection(&ca)).unwrap();
    let a = inspector.leaf("a.example.com").unwrap();
    let again = inspector.leaf("a.example.com").unwrap();
    let b = inspector.leaf("b.example.com").unwrap();
    assert!(Arc::ptr_eq(&a, &again));
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(a.cert.len(), 2, "the leaf and the CA");
}

#[test]
fn a_ca_that_cannot_be_read_is_an_error() {
    let state = InspectionState::with_extra_roots(None).unwrap();
    let (cert, _) = ca();
    let bad = Inspection {
        ca_certificate: cert,
        ca_key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
        never_inspect: vec![],
    };
    assert!(state.inspector(&bad).is_err());
    let e = InspectionState::with_extra_roots(Some(std::path::Path::new("/nonexistent/ca.pem")))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("--upstream-ca-file /nonexistent/ca.pem"),
        "{e}"
    );
}
