//! Password hashes in Dovecot's `{SCHEME}hash` notation: parsing, verification, hashing.
//! No file or socket I/O here.
//!
//! Formats, as written by the usual tools (and so accepted here):
//! - `{SHA512-CRYPT}$6$[rounds=N$]salt$hash` and `{SHA256-CRYPT}$5$[rounds=N$]salt$hash`: the
//!   crypt(3) SHA-crypt formats (`openssl passwd -6`, `mkpasswd -m sha-512`), checked by the
//!   rules of libxcrypt: rounds 1000..=999999999 without leading zeros, salt of at most 16
//!   characters, a digest of 86 (SHA-512) or 43 (SHA-256) characters.
//! - `{BLF-CRYPT}$2a$`, `$2b$` or `$2y$` bcrypt (`htpasswd -B`, `doveadm pw -s BLF-CRYPT`).
//! - `{ARGON2ID}$argon2id$...` and `{ARGON2I}$argon2i$...`: PHC strings as libsodium (Dovecot)
//!   and the Argon2 reference implementation write them; a missing `v=` means version 0x10, as
//!   in the reference implementation.
//! - `{PLAIN}password`: cleartext, compared in constant time.
//!
//! The digest algorithms come from the RustCrypto crates (`sha-crypt`, `argon2`) and `bcrypt`;
//! this module only parses, encodes and compares.

use argon2::CustomizedPasswordHasher as _;
use rand::TryRngCore as _;

/// Longest password `verify` accepts and `hash_password` hashes, in bytes. SHA-crypt costs time
/// quadratic in the password length (a 1 MiB password means hashing a TiB), so an unbounded
/// password would let an unauthenticated client burn the auth daemon's CPU.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Largest Argon2 memory cost (`m`, in KiB) a stored hash may ask for: 1 GiB, libsodium's
/// "sensitive" level. Verifying allocates that much, so a bigger value is refused as malformed
/// rather than letting one users-file line make authd abort on an allocation failure.
pub const ARGON2_MAX_M_COST: u32 = 1 << 20;

/// bcrypt cost used by `hash_password` (Dovecot's own default is 5, too weak today).
pub const BLF_CRYPT_COST: u32 = 10;

/// Salt length, in characters, of the SHA-crypt hashes `hash_password` makes (the maximum the
/// format uses, as `openssl passwd -6` and `mkpasswd` do).
const SHA_CRYPT_SALT_LEN: usize = 16;

/// Salt length, in bytes, for bcrypt (fixed by the format) and Argon2 (the PHC recommendation).
const RANDOM_SALT_BYTES: usize = 16;

/// The schemes Postern reads in the users file (Dovecot passwd-file names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sha512Crypt,
    Sha256Crypt,
    BlfCrypt,
    Argon2id,
    Argon2i,
    Plain,
}

impl Scheme {
    /// Every scheme, in the order the error messages list them.
    pub const ALL: [Scheme; 6] = [
        Scheme::Sha512Crypt,
        Scheme::Sha256Crypt,
        Scheme::BlfCrypt,
        Scheme::Argon2id,
        Scheme::Argon2i,
        Scheme::Plain,
    ];

    /// The name between braces, e.g. `SHA512-CRYPT`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Argon2i => "ARGON2I",
            Scheme::Plain => "PLAIN",
        }
    }
    /// Case-insensitive parse of the name between braces.
    pub fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswdError {
    #[error("password field must start with {{SCHEME}}")]
    MissingScheme,
    #[error(
        "unknown password scheme {0:?} (known: SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2ID, ARGON2I, PLAIN)"
    )]
    UnknownScheme(String),
    #[error("malformed {scheme} hash")]
    Malformed { scheme: &'static str },
    /// `hash_password` was given a password longer than [`MAX_PASSWORD_LEN`].
    #[error("password longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    /// `hash_password` could not produce a hash (no randomness, or a `{PLAIN}` password the
    /// users file cannot hold).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// A stored credential: `{SCHEME}hash`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPassword {
    scheme: Scheme,
    hash: String,
}

impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredPassword({{{}}}...)", self.scheme.name())
    }
}

impl StoredPassword {
    /// Parses `{SCHEME}hash`; checks the hash is well-formed for its scheme.
    pub fn parse(field: &str) -> Result<StoredPassword, PasswdError> {
        let rest = field.strip_prefix('{').ok_or(PasswdError::MissingScheme)?;
        let (name, hash) = rest.split_once('}').ok_or(PasswdError::MissingScheme)?;
        let scheme =
            Scheme::from_name(name).ok_or_else(|| PasswdError::UnknownScheme(name.to_string()))?;
        let malformed = PasswdError::Malformed {
            scheme: scheme.name(),
        };
        let well_formed = match scheme {
            Scheme::Sha512Crypt => ShaCryptHash::parse(ShaVariant::Sha512, hash).is_some(),
            Scheme::Sha256Crypt => ShaCryptHash::parse(ShaVariant::Sha256, hash).is_some(),
            Scheme::BlfCrypt => parse_bcrypt(hash).is_some(),
            Scheme::Argon2id | Scheme::Argon2i => Argon2Hash::parse(scheme, hash).is_some(),
            Scheme::Plain => plain_storable(hash),
        };
        if !well_formed {
            return Err(malformed);
        }
        Ok(StoredPassword {
            scheme,
            hash: hash.to_string(),
        })
    }
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// True when `password` matches. Constant-time comparison. A password longer than
    /// [`MAX_PASSWORD_LEN`] never matches.
    pub fn verify(&self, password: &[u8]) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match self.scheme {
            Scheme::Sha512Crypt => ShaCryptHash::parse(ShaVariant::Sha512, &self.hash)
                .is_some_and(|h| h.verify(password)),
            Scheme::Sha256Crypt => ShaCryptHash::parse(ShaVariant::Sha256, &self.hash)
                .is_some_and(|h| h.verify(password)),
            // bcrypt compares its digests with `subtle`; it truncates at 72 bytes, as every
            // bcrypt does.
            Scheme::BlfCrypt => {
                parse_bcrypt(&self.hash).is_some()
                    && matches!(bcrypt::verify(password, &self.hash), Ok(true))
            }
            Scheme::Argon2id | Scheme::Argon2i => {
                Argon2Hash::parse(self.scheme, &self.hash).is_some_and(|h| h.verify(password))
            }
            Scheme::Plain => ct_eq(self.hash.as_bytes(), password),
        }
    }
    /// `{SCHEME}hash`, as written in the users file.
    pub fn to_field(&self) -> String {
        format!("{{{}}}{}", self.scheme.name(), self.hash)
    }
}

/// Hashes `password` with a fresh random salt; returns the stored form.
///
/// Defaults: SHA-crypt with 5000 rounds (written without `rounds=`, like `openssl passwd -6`)
/// and a 16-character salt; bcrypt cost [`BLF_CRYPT_COST`] as `$2y$` (what Dovecot and
/// htpasswd write; bcrypt uses only the first 72 bytes); Argon2 with the `argon2` crate's
/// default parameters (m=19456 KiB, t=2, p=1) and a 16-byte salt. `{PLAIN}` stores the password
/// itself, which must be UTF-8 without `:`, CR or LF and not end in whitespace, so the users
/// file holds it unchanged.
pub fn hash_password(scheme: Scheme, password: &[u8]) -> Result<StoredPassword, PasswdError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswdError::TooLong);
    }
    let hash = match scheme {
        Scheme::Sha512Crypt => ShaCryptHash::generate(ShaVariant::Sha512, password)?,
        Scheme::Sha256Crypt => ShaCryptHash::generate(ShaVariant::Sha256, password)?,
        Scheme::BlfCrypt => bcrypt::hash_with_salt(password, BLF_CRYPT_COST, random_bytes()?)
            .map_err(|e| PasswdError::Hash(e.to_string()))?
            .format_for_version(bcrypt::Version::TwoY),
        Scheme::Argon2id => Argon2Hash::generate(argon2::Algorithm::Argon2id, password)?,
        Scheme::Argon2i => Argon2Hash::generate(argon2::Algorithm::Argon2i, password)?,
        Scheme::Plain => {
            let text = std::str::from_utf8(password)
                .map_err(|_| PasswdError::Hash("a {PLAIN} password must be UTF-8".into()))?;
            // Trailing whitespace would be trimmed away when the users file is read back.
            if !plain_storable(text) || text.ends_with(char::is_whitespace) {
                return Err(PasswdError::Hash(
                    "a {PLAIN} password cannot contain ':', CR or LF, nor end in whitespace".into(),
                ));
            }
            text.to_string()
        }
    };
    Ok(StoredPassword { scheme, hash })
}

/// Compares in time that depends only on the lengths, never on where the bytes differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// A `{PLAIN}` value must fit in one users-file field: `:` separates fields, CR/LF lines.
fn plain_storable(text: &str) -> bool {
    !text.contains([':', '\r', '\n'])
}

/// Cryptographic randomness from the operating system.
fn random_bytes<const N: usize>() -> Result<[u8; N], PasswdError> {
    let mut buf = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| PasswdError::Hash(format!("no randomness from the OS: {e}")))?;
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------
// SHA-crypt ($5$, $6$)

/// The crypt(3) base-64 alphabet (also the characters of generated salts).
const CRYPT_B64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShaVariant {
    Sha256,
    Sha512,
}

impl ShaVariant {
    fn prefix(self) -> &'static str {
        match self {
            ShaVariant::Sha256 => "$5$",
            ShaVariant::Sha512 => "$6$",
        }
    }
    /// Length of the encoded digest: 32 bytes -> 43 characters, 64 bytes -> 86.
    fn encoded_len(self) -> usize {
        match self {
            ShaVariant::Sha256 => 43,
            ShaVariant::Sha512 => 86,
        }
    }
    /// Values the last digest character may take: it carries 4 (SHA-256) or 2 (SHA-512) bits,
    /// so a larger value is a non-canonical encoding no crypt(3) writes.
    fn last_char_limit(self) -> usize {
        match self {
            ShaVariant::Sha256 => 16,
            ShaVariant::Sha512 => 4,
        }
    }
}

/// A parsed `$5$`/`$6$` hash, borrowing its text.
struct ShaCryptHash<'a> {
    variant: ShaVariant,
    /// `None` when the hash has no `rounds=` segment (5000 rounds).
    rounds: Option<u32>,
    salt: &'a str,
    digest: &'a str,
}

impl<'a> ShaCryptHash<'a> {
    /// Parses by libxcrypt's rules (crypt-sha512.c): `rounds=` must start with 1-9 and lie in
    /// 1000..=999999999 (glibc would clamp; libxcrypt, Debian's crypt(3), refuses), the salt
    /// is at most 16 printable characters other than `:;*!\` and ends at `$`.
    fn parse(variant: ShaVariant, text: &'a str) -> Option<ShaCryptHash<'a>> {
        let mut rest = text.strip_prefix(variant.prefix())?;
        let mut rounds = None;
        if let Some(after) = rest.strip_prefix("rounds=") {
            let (number, tail) = after.split_once('$')?;
            if !number.starts_with(|c: char| matches!(c, '1'..='9'))
                || !number.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let n: u32 = number.parse().ok()?;
            sha_crypt::Params::new(n).ok()?;
            rounds = Some(n);
            rest = tail;
        }
        let (salt, digest) = rest.split_once('$')?;
        let salt_ok = salt.len() <= SHA_CRYPT_SALT_LEN
            && salt
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b":;*!\\".contains(&b));
        let digest_ok = digest.len() == variant.encoded_len()
            && digest.bytes().all(|b| CRYPT_B64.contains(&b))
            && digest
                .bytes()
                .last()
                .and_then(|b| CRYPT_B64.iter().position(|&c| c == b))
                .is_some_and(|v| v < variant.last_char_limit());
        (salt_ok && digest_ok).then_some(ShaCryptHash {
            variant,
            rounds,
            salt,
            digest,
        })
    }

    fn verify(&self, password: &[u8]) -> bool {
        let computed = sha_crypt_digest(self.variant, password, self.salt, self.rounds);
        ct_eq(computed.as_bytes(), self.digest.as_bytes())
    }

    /// A fresh `$6$salt$digest` (or `$5$`) with the default 5000 rounds.
    fn generate(variant: ShaVariant, password: &[u8]) -> Result<String, PasswdError> {
        let random: [u8; SHA_CRYPT_SALT_LEN] = random_bytes()?;
        // 64 divides 256, so masking keeps every alphabet character equally likely.
        let salt: String = random
            .iter()
            .map(|b| char::from(CRYPT_B64[usize::from(b & 0x3f)]))
            .collect();
        let digest = sha_crypt_digest(variant, password, &salt, None);
        Ok(format!("{}{salt}${digest}", variant.prefix()))
    }
}

/// Runs SHA-crypt and encodes the digest in crypt(3)'s byte order and base 64.
fn sha_crypt_digest(
    variant: ShaVariant,
    password: &[u8],
    salt: &str,
    rounds: Option<u32>,
) -> String {
    let params = rounds
        .and_then(|n| sha_crypt::Params::new(n).ok())
        .unwrap_or_default();
    match variant {
        ShaVariant::Sha256 => {
            let raw = sha_crypt::sha256_crypt(password, salt.as_bytes(), params);
            crypt_b64_encode(&raw, &SHA256_ORDER)
        }
        ShaVariant::Sha512 => {
            let raw = sha_crypt::sha512_crypt(password, salt.as_bytes(), params);
            crypt_b64_encode(&raw, &SHA512_ORDER)
        }
    }
}

/// Byte triples `(B2, B1, B0)` in the order crypt-sha256.c feeds them to `b64_from_24bit`
/// (`None` is a zero byte): `(0,10,20) (21,1,11) (12,22,2) ... (9,19,29)` then `(-,31,30)`.
const SHA256_ORDER: [[Option<usize>; 3]; 11] = sha256_order();
/// Same for crypt-sha512.c: `(0,21,42) (22,43,1) (44,2,23) ... (20,41,62)` then `(-,-,63)`.
const SHA512_ORDER: [[Option<usize>; 3]; 22] = sha512_order();

const fn sha256_order() -> [[Option<usize>; 3]; 11] {
    let mut out = [[None; 3]; 11];
    let mut k = 0;
    while k < 10 {
        let (a, b, c) = (Some(k), Some(k + 10), Some(k + 20));
        out[k] = match k % 3 {
            0 => [a, b, c],
            1 => [c, a, b],
            _ => [b, c, a],
        };
        k += 1;
    }
    out[10] = [None, Some(31), Some(30)];
    out
}

const fn sha512_order() -> [[Option<usize>; 3]; 22] {
    let mut out = [[None; 3]; 22];
    let mut k = 0;
    while k < 21 {
        let (a, b, c) = (Some(k), Some(k + 21), Some(k + 42));
        out[k] = match k % 3 {
            0 => [a, b, c],
            1 => [b, c, a],
            _ => [c, a, b],
        };
        k += 1;
    }
    out[21] = [None, None, Some(63)];
    out
}

/// crypt(3)'s `b64_from_24bit`: each triple makes a 24-bit word, written low 6 bits first; the
/// last triple writes only as many characters as it has bits (3 for SHA-256, 2 for SHA-512).
fn crypt_b64_encode(raw: &[u8], order: &[[Option<usize>; 3]]) -> String {
    let mut out = String::with_capacity(86);
    let byte = |i: Option<usize>| i.and_then(|i| raw.get(i)).map_or(0u32, |&b| u32::from(b));
    for triple in order {
        let mut w = (byte(triple[0]) << 16) | (byte(triple[1]) << 8) | byte(triple[2]);
        let chars = 1 + triple.iter().filter(|i| i.is_some()).count();
        for _ in 0..chars {
            // `w & 0x3f` is below 64, the alphabet's length.
            out.push(char::from(CRYPT_B64[(w & 0x3f) as usize]));
            w >>= 6;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// bcrypt

/// Checks a bcrypt hash: `$2a$`, `$2b$` or `$2y$` (not the buggy `$2x$`), a two-digit cost in
/// 4..=31, 22 salt and 31 digest characters in canonical bcrypt base 64.
fn parse_bcrypt(text: &str) -> Option<bcrypt::HashParts> {
    let b = text.as_bytes();
    let version_ok = matches!(b.get(..4), Some(b"$2a$" | b"$2b$" | b"$2y$"));
    let cost_ok = b
        .get(4..6)
        .is_some_and(|c| c.iter().all(u8::is_ascii_digit));
    if !version_ok || !cost_ok {
        return None;
    }
    let parts: bcrypt::HashParts = text.parse().ok()?;
    (4..=31).contains(&parts.get_cost()).then_some(parts)
}

// ---------------------------------------------------------------------------------------------
// Argon2

/// A parsed and checked Argon2 PHC string.
struct Argon2Hash {
    algorithm: argon2::Algorithm,
    version: argon2::Version,
    params: argon2::Params,
    phc: argon2::PasswordHash,
}

impl Argon2Hash {
    fn parse(scheme: Scheme, text: &str) -> Option<Argon2Hash> {
        let algorithm = match scheme {
            Scheme::Argon2id => argon2::Algorithm::Argon2id,
            Scheme::Argon2i => argon2::Algorithm::Argon2i,
            _ => return None,
        };
        let phc = argon2::PasswordHash::new(text).ok()?;
        if phc.algorithm.as_str() != algorithm.as_str() {
            return None;
        }
        // The reference implementation reads a missing `v=` as version 0x10.
        let version = match phc.version {
            None | Some(0x10) => argon2::Version::V0x10,
            Some(0x13) => argon2::Version::V0x13,
            Some(_) => return None,
        };
        let params = argon2::Params::try_from(&phc).ok()?;
        let salt_ok = phc.salt.is_some_and(|s| s.len() >= argon2::MIN_SALT_LEN);
        let ok = salt_ok && phc.hash.is_some() && params.m_cost() <= ARGON2_MAX_M_COST;
        ok.then_some(Argon2Hash {
            algorithm,
            version,
            params,
            phc,
        })
    }

    fn verify(&self, password: &[u8]) -> bool {
        let (Some(salt), Some(expected)) = (&self.phc.salt, &self.phc.hash) else {
            return false;
        };
        let computed = argon2::Argon2::default().hash_password_customized(
            password,
            salt,
            Some(self.algorithm.as_str()),
            Some(self.version.into()),
            self.params.clone(),
        );
        // `Output`'s equality is constant-time (phc crate, via `subtle`).
        matches!(computed, Ok(c) if c.hash.as_ref() == Some(expected))
    }

    fn generate(algorithm: argon2::Algorithm, password: &[u8]) -> Result<String, PasswdError> {
        let salt: [u8; RANDOM_SALT_BYTES] = random_bytes()?;
        // The crate takes the algorithm and version from these arguments, not from `self`.
        argon2::Argon2::default()
            .hash_password_customized(
                password,
                &salt,
                Some(algorithm.as_str()),
                Some(argon2::Version::V0x13.into()),
                argon2::Params::DEFAULT,
            )
            .map(|h| h.to_string())
            .map_err(|e| PasswdError::Hash(e.to_string()))
    }
}

#[cfg(test)]
#[path = "passwd_tests.rs"]
mod tests;
