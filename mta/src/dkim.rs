//! DKIM signing (RFC 6376) of submitted mail, with mail-auth: one signer per `[dkim] keys`
//! entry (RSA-SHA256 or Ed25519-SHA256, relaxed/relaxed canonicalization, §3.4), chosen by
//! the domain of the envelope sender. Produces the DKIM-Signature header to put in front of
//! the message; no I/O, no queue access here.

use mail_auth::common::crypto::{DkimKey as SigningKey, Ed25519Key, RsaKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use shared::config::slice::DkimKey;

/// Header fields signed (RFC 6376 §5.4.1's list, less the trace fields); those absent are
/// signed as empty, so nobody can add them on the way (§5.4.2).
const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// The signers, by lower-case domain.
#[derive(Default)]
pub struct Signers {
    by_domain: Vec<(String, DkimSigner<SigningKey, Done>)>,
}

impl Signers {
    /// Parses every key; a key that does not parse is an error naming its domain and selector.
    pub fn new(keys: &[DkimKey]) -> anyhow::Result<Signers> {
        let mut by_domain = Vec::new();
        for k in keys {
            let key = parse_key(&k.key_pem).map_err(|e| {
                anyhow::anyhow!("DKIM key of {} (selector {}): {e}", k.domain, k.selector)
            })?;
            let signer = DkimSigner::from_key(key)
                .domain(k.domain.to_ascii_lowercase())
                .selector(k.selector.clone())
                .headers(SIGNED_HEADERS)
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            by_domain.push((k.domain.to_ascii_lowercase(), signer));
        }
        Ok(Signers { by_domain })
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The DKIM-Signature header field (LF line ends) for a message from `sender`, when a key
    /// of its domain exists. `message` has LF line ends, as the queue keeps it; the signature
    /// covers the CRLF form that goes on the wire.
    pub fn sign(&self, sender: &str, message: &[u8]) -> Option<Result<String, String>> {
        let domain = sender.rsplit_once('@')?.1.to_ascii_lowercase();
        let (_, signer) = self.by_domain.iter().find(|(d, _)| *d == domain)?;
        let wire = crlf(message);
        Some(
            signer
                .sign(&wire)
                .map(|s| s.to_header().replace("\r\n", "\n"))
                .map_err(|e| e.to_string()),
        )
    }
}

/// RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8), from PEM.
fn parse_key(pem: &str) -> Result<SigningKey, String> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())?;
    if let PrivateKeyDer::Pkcs8(pkcs8) = &der
        && let Ok(ed) = Ed25519Key::from_pkcs8_der(pkcs8.secret_pkcs8_der())
    {
        return Ok(SigningKey::Ed25519(ed));
    }
    RsaKey::from_key_der(der)
        .map(SigningKey::Rsa)
        .map_err(|e| format!("neither an RSA nor an Ed25519 key: {e}"))
}

/// LF line ends to CRLF (no dot-stuffing: this is what the signature covers).
fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 40);
    for &b in message {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ed25519 key in PKCS#8 PEM (generated for this test only).
    fn ed25519_pem() -> (String, Vec<u8>) {
        let der = Ed25519Key::generate_pkcs8().unwrap();
        let public = Ed25519Key::from_pkcs8_der(&der).unwrap().public_key();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
        (
            format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
            public,
        )
    }

    #[test]
    fn signs_mail_of_its_domain_only() {
        let (pem, _) = ed25519_pem();
        let signers = Signers::new(&[DkimKey {
            domain: "Example.test".into(),
            selector: "s1".into(),
            key_pem: pem,
        }])
        .unwrap();
        let msg = b"From: <a@example.test>\nSubject: hi\n\nbody\n";
        let header = signers.sign("a@EXAMPLE.test", msg).unwrap().unwrap();
        assert!(
            header.starts_with(
                "DKIM-Signature: v=1; a=ed25519-sha256; s=s1; d=example.test; c=relaxed/relaxed;"
            ),
            "{header}"
        );
        assert!(
            header.ends_with('\n') && !header.contains('\r'),
            "{header:?}"
        );
        // Absent fields are listed too (RFC 6376 §5.4): adding one later breaks the signature.
        assert!(
            header.contains("h=Subject:From:To:Cc:Date:Message-ID"),
            "{header}"
        );
        assert!(signers.sign("a@other.test", msg).is_none());
        assert!(signers.sign("", msg).is_none());
    }

    #[test]
    fn a_bad_key_is_an_error() {
        let bad = DkimKey {
            domain: "example.test".into(),
            selector: "s1".into(),
            key_pem: "not a key".into(),
        };
        let err = Signers::new(&[bad]).err().unwrap().to_string();
        assert!(err.contains("example.test (selector s1)"), "{err}");
    }
}
