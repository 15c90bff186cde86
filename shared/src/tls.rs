//! TLS material: reading PEM certificate chains and keys (rustls-pki-types), generating a
//! self-signed pair (rcgen), and building the rustls server configuration the protocol daemons
//! use; and the one client configuration that accepts any server certificate (opportunistic
//! TLS between MTAs, RFC 7435, and the benchmarks' clients). No sockets here.

use std::path::Path;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

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

/// A client configuration that accepts any server certificate, while still checking the
/// handshake signatures (the session is encrypted with the key of whoever holds that
/// certificate): opportunistic STARTTLS between MTAs (RFC 7435), and clients of servers that
/// the caller started itself with a throw-away certificate.
pub fn accept_any_client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    )
}

/// See [`accept_any_client_config`].
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
