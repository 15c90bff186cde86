//! TLS for outbound SMTP (rustls client): a verifying configuration with the system's CA
//! store (`/etc/ssl/certs`), and an opportunistic one that accepts any certificate, as
//! RFC 7435 allows for STARTTLS between MTAs (`[outbound] tls = "may" | "encrypt"`, or a
//! relay with `tls_verify = false`). No sockets here.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
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
        let any = shared::tls::accept_any_client_config()?;
        Ok(ClientTls {
            verify: Arc::new(verify),
            any: Arc::new(any),
        })
    }
}
