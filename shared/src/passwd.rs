//! Password hashes in Dovecot's `{SCHEME}hash` notation: parsing, verification, hashing.
//! No file or socket I/O here.

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
    /// The name between braces, e.g. `SHA512-CRYPT`.
    pub fn name(self) -> &'static str {
        todo!()
    }
    /// Case-insensitive parse of the name between braces.
    pub fn from_name(name: &str) -> Option<Scheme> {
        todo!()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswdError {
    #[error("password field must start with {{SCHEME}}")]
    MissingScheme,
    #[error("unknown password scheme {0:?} (known: SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2ID, ARGON2I, PLAIN)")]
    UnknownScheme(String),
    #[error("malformed {scheme} hash")]
    Malformed { scheme: &'static str },
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
        todo!()
    }
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// True when `password` matches. Constant-time comparison.
    pub fn verify(&self, password: &[u8]) -> bool {
        todo!()
    }
    /// `{SCHEME}hash`, as written in the users file.
    pub fn to_field(&self) -> String {
        format!("{{{}}}{}", self.scheme.name(), self.hash)
    }
}

/// Hashes `password` with a fresh random salt; returns the stored form.
pub fn hash_password(scheme: Scheme, password: &[u8]) -> Result<StoredPassword, PasswdError> {
    todo!()
}
