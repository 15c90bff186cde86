//! TLS for outbound SMTP (rustls client): a verifying configuration with the system's CA
//! store (`/etc/ssl/certs`), and an opportunistic one that accepts any certificate, as
//! RFC 7435 allows for STARTTLS between MTAs (`[outbound] tls = "may" | "encrypt"`, or a
//! relay with `tls_verify = false`). No sockets here.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls_pki_types::pem::PemObject;

/// Where Debian (ca-certificates) keeps the system's trusted CAs in one file.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The two client configurations, built once.
pub struct ClientTls {
    pub verify: Arc<rustls::ClientConfig>,
    pub any: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    pub fn new() -> anyhow::Result<ClientTls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match CertificateDer::pem_file_iter(CA_BUNDLE) {
            Ok(certs) => {
                let (added, _) = roots.add_parsable_certificates(certs.flatten());
                tracing::debug!(
                    event = "outbound.ca_loaded",
                    added,
                    "system CA certificates"
                );
            }
            Err(e) => tracing::warn!(
                event = "outbound.no_ca",
                error = %e,
                "cannot read {CA_BUNDLE}: verified TLS will fail"
            ),
        }
        let verify = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let any = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        Ok(ClientTls {
            verify: Arc::new(verify),
            any: Arc::new(any),
        })
    }
}

/// Accepts every certificate, but still checks the handshake signatures (so the session is
/// encrypted with the key of whoever holds that certificate).
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
