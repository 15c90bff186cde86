//! `postern dkim generate`: a new DKIM key pair (RFC 6376; RSA 2048 or Ed25519 of RFC 8463),
//! the private key written 0600 for the supervisor to read as root, the public key printed
//! as the TXT record to publish. Never overwrites an existing key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use mail_auth::dkim::generate::DkimKeyPair;
use shared::config::Config;

/// RSA key size: 2048 bits, as RFC 8301 §3.2 recommends (1024 at the very least).
const RSA_BITS: usize = 2048;

pub fn generate(
    config: &Config,
    domain: &str,
    selector: &str,
    algorithm: &str,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let domain = domain.to_ascii_lowercase();
    if !shared::config::is_domain(&domain) || !shared::config::is_domain(selector) {
        bail!("{domain:?} or {selector:?} is not a valid domain or selector");
    }
    let (pem, k, public) = match algorithm {
        "rsa" => rsa_pair()?,
        "ed25519" => ed25519_pair()?,
        other => bail!("unknown algorithm {other:?}: \"rsa\" or \"ed25519\""),
    };
    let path = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_path(config, &domain, selector));
    write_new(&path, &pem)?;
    println!("wrote {} ({algorithm})", path.display());
    println!("\nAdd to [dkim] keys in {}:", config.file.display());
    println!(
        "  {{ domain = \"{domain}\", selector = \"{selector}\", key = \"{}\" }}",
        path.display()
    );
    println!("\nPublish this DNS record:");
    println!("{}", txt_record(&domain, selector, k, &public));
    Ok(())
}

fn default_path(config: &Config, domain: &str, selector: &str) -> PathBuf {
    let dir = config.file.parent().unwrap_or(Path::new("/etc/postern"));
    dir.join("dkim").join(format!("{domain}.{selector}.pem"))
}

/// (private key PEM, k= tag, public key DER for p=).
fn rsa_pair() -> anyhow::Result<(String, &'static str, Vec<u8>)> {
    let pair = DkimKeyPair::generate_rsa(RSA_BITS).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pem = pem("RSA PRIVATE KEY", pair.private_key());
    Ok((pem, "rsa", spki_from_pkcs1(pair.public_key())))
}

fn ed25519_pair() -> anyhow::Result<(String, &'static str, Vec<u8>)> {
    let pair = DkimKeyPair::generate_ed25519().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((
        pem("PRIVATE KEY", pair.private_key()),
        "ed25519",
        pair.public_key().to_vec(),
    ))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A DER length.
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=127 => vec![n as u8],
        128..=255 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1), the form DKIM
/// records carry in practice (what `openssl rsa -pubout` prints).
fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1 (rsaEncryption), NULL }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x03];
    bits.extend(der_len(pkcs1.len() + 1));
    bits.push(0); // no unused bits
    bits.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    out.extend(der_len(ALGORITHM.len() + bits.len()));
    out.extend_from_slice(&ALGORITHM);
    out.extend(bits);
    out
}

/// The zone-file line, the value split in strings of at most 255 octets (RFC 1035 §3.3.14).
fn txt_record(domain: &str, selector: &str, k: &str, public: &[u8]) -> String {
    let value = format!(
        "v=DKIM1; k={k}; p={}",
        base64::engine::general_purpose::STANDARD.encode(public)
    );
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{domain}. IN TXT ( {} )",
        strings.join(" ")
    )
}

/// Creates `path` (0600, never replacing a file) with `text`, and its directory if needed.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: not replacing an existing key", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_wraps_the_rsa_key_like_openssl() {
        let pkcs1 = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let spki = spki_from_pkcs1(&pkcs1);
        assert_eq!(spki[..2], [0x30, 15 + 2 + 1 + pkcs1.len() as u8]);
        assert!(spki.ends_with(&[0x03, 6, 0, 0x30, 0x03, 0x02, 0x01, 0x05]));
        assert_eq!(der_len(300), vec![0x82, 0x01, 0x2c]);
    }

    #[test]
    fn long_txt_values_are_split() {
        let line = txt_record("example.org", "s1", "rsa", &[7u8; 300]);
        assert!(line.starts_with("s1._domainkey.example.org. IN TXT ( \"v=DKIM1; k=rsa; p="));
        assert_eq!(line.matches('"').count(), 4, "{line}");
    }
}
