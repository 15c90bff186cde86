//! TLS material: reading PEM certificate chains and keys (rustls-pki-types), generating a
//! self-signed pair (rcgen), and building the rustls server configuration the protocol daemons
//! use. No sockets here.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::slice::TlsMaterial;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS material: {0}")]
    Material(String),
}

fn file_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads and checks a certificate chain and key pair.
pub fn read_material(cert: &Path, key: &Path) -> Result<TlsMaterial, TlsError> {
    let cert_pem =
        std::fs::read_to_string(cert).map_err(|e| file_error(cert, format!("cannot read: {e}")))?;
    let key_pem =
        std::fs::read_to_string(key).map_err(|e| file_error(key, format!("cannot read: {e}")))?;
    let material = TlsMaterial { cert_pem, key_pem };
    server_config(&material).map_err(|e| match e {
        TlsError::Material(m) => file_error(cert, m),
        other => other,
    })?;
    Ok(material)
}

/// Whether `pem` holds a private key (PKCS#1, PKCS#8 or SEC1), e.g. a DKIM key.
pub fn is_private_key_pem(pem: &str) -> bool {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).is_ok()
}

/// The rustls server configuration for this material (TLS 1.2 and 1.3).
pub fn server_config(material: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Material(format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Material("no certificate in the PEM file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes())
        .map_err(|e| TlsError::Material(format!("bad private key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Material(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Material(format!("certificate and key do not fit: {e}")))?;
    Ok(Arc::new(config))
}

/// A self-signed certificate for `hostname` (and `localhost`), PEM cert and key.
pub fn generate_self_signed(hostname: &str) -> Result<TlsMaterial, TlsError> {
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError::Material(format!("cannot generate a certificate: {e}")))?;
    Ok(TlsMaterial {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_material_builds_a_server_config() {
        let m = generate_self_signed("mail.example.org").unwrap();
        assert!(server_config(&m).is_ok());
        let other = generate_self_signed("other.example.org").unwrap();
        let mixed = TlsMaterial {
            cert_pem: m.cert_pem.clone(),
            key_pem: other.key_pem,
        };
        assert!(
            server_config(&mixed).is_err(),
            "a key of another certificate must be refused"
        );
        let garbage = TlsMaterial {
            cert_pem: "nonsense".into(),
            key_pem: m.key_pem,
        };
        assert!(server_config(&garbage).is_err());
    }
}
