//! LOGIN (RFC 9051 §6.2.3) and AUTHENTICATE PLAIN (RFC 9051 §6.2.2, RFC 4616) with SASL-IR
//! (RFC 4959): turning the client's words into [`Credentials`] for authd, and authd's
//! answer into the tagged reply and the open mailstore. The verification itself, and the
//! failure delay, are the io layer's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use shared::mailstore::Store;
use shared::proto::auth::VerifyOutcome;

use super::{Session, State, Step};
use crate::response::Code;

/// A user name and password to verify with authd.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(super) fn login(&mut self, tag: Vec<u8>, user: Vec<u8>, password: Vec<u8>) -> Step {
        let (Ok(user), Ok(password)) = (String::from_utf8(user), String::from_utf8(password))
        else {
            return self.no(
                &tag,
                Some(Code::AuthenticationFailed),
                "Authentication failed",
            );
        };
        self.pending_tag = tag;
        Step::Verify(Credentials { user, password })
    }

    pub(super) fn authenticate(
        &mut self,
        tag: Vec<u8>,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> Step {
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            return self.no(&tag, Some(Code::Cannot), "Unsupported mechanism");
        }
        self.pending_tag = tag;
        match initial {
            Some(b64) => self.plain(&b64),
            None => Step::AuthContinue,
        }
    }

    /// The client's line after `+ ` (RFC 9051 §6.2.2): `*` cancels with BAD.
    pub fn auth_line(&mut self, line: &[u8]) -> Step {
        if line == b"*" {
            let tag = std::mem::take(&mut self.pending_tag);
            return self.finish_bad(&tag, "Authentication cancelled");
        }
        self.plain(line)
    }

    /// RFC 4616 §2: `authzid NUL authcid NUL passwd`; an authzid other than the user is
    /// refused (no proxy login).
    fn plain(&mut self, b64: &[u8]) -> Step {
        let tag = std::mem::take(&mut self.pending_tag);
        let Some(text) = B64.decode(b64).ok().and_then(|t| String::from_utf8(t).ok()) else {
            return self.finish_bad(&tag, "Invalid base64 in PLAIN response");
        };
        match text.split('\0').collect::<Vec<_>>().as_slice() {
            [authz, user, password] if authz.is_empty() || authz == user => {
                self.pending_tag = tag;
                Step::Verify(Credentials {
                    user: user.to_string(),
                    password: password.to_string(),
                })
            }
            [_, _, _] => self.no(&tag, Some(Code::AuthorizationFailed), "Not authorized"),
            _ => self.finish_bad(&tag, "Malformed PLAIN response"),
        }
    }

    /// authd's answer (the caller has waited a failure's delay). Opens the mailstore,
    /// creating the default folders (RFC 6154) when missing. Blocking.
    pub fn auth_result(&mut self, outcome: VerifyOutcome) -> Step {
        let tag = std::mem::take(&mut self.pending_tag);
        match outcome {
            VerifyOutcome::Ok { user } => self.logged_in(&tag, user),
            VerifyOutcome::Fail { .. } => {
                tracing::info!(event = "imap.auth_failed", "authentication failed");
                self.no(
                    &tag,
                    Some(Code::AuthenticationFailed),
                    "Authentication failed",
                )
            }
            VerifyOutcome::TempFail { reason } => {
                tracing::warn!(event = "imap.auth_tempfail", reason = ?reason, "authentication unavailable");
                self.no(
                    &tag,
                    Some(Code::Unavailable),
                    "Authentication temporarily unavailable",
                )
            }
        }
    }

    fn logged_in(&mut self, tag: &[u8], user: String) -> Step {
        let store = Store::open(&self.cfg.mail_root, &user).and_then(|s| {
            s.ensure_default_folders()?;
            Ok(s)
        });
        match store {
            Ok(store) => {
                tracing::info!(event = "imap.login", user = %user, "logged in");
                self.store = Some(store);
                self.user = Some(user);
                self.state = State::Auth;
                let caps = self.capabilities();
                let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
                self.ok(tag, Some(Code::Capability(&caps)), "Logged in");
                Step::Next
            }
            Err(e) => {
                tracing::error!(event = "imap.store_failed", user = %user, error = %e, "cannot open the mailstore");
                self.no(tag, Some(Code::ServerBug), "Cannot open the mailbox store")
            }
        }
    }

    /// authd accepted, but the user already has as many sessions as allowed.
    pub fn too_many_sessions(&mut self) -> Step {
        let tag = std::mem::take(&mut self.pending_tag);
        self.no(&tag, Some(Code::Limit), "Too many sessions for this user")
    }

    /// After the handshake of STARTTLS.
    pub fn tls_started(&mut self) {
        self.tls = true;
    }
}
