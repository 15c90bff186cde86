//! The policy of each SMTP listener (ARCHITECTURE §2, RFC 8314): what TLS and authentication
//! it offers and requires. One table, consulted by the session's single check.

use shared::config::ListenerName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// TLS from the first byte (465).
    pub implicit_tls: bool,
    /// STARTTLS required before AUTH and MAIL (587).
    pub tls_required: bool,
    /// AUTH offered, and required before MAIL (587, 465); never on 25.
    pub auth: bool,
}

impl Policy {
    pub fn for_listener(name: ListenerName) -> Policy {
        match name {
            ListenerName::Submission => Policy {
                implicit_tls: false,
                tls_required: true,
                auth: true,
            },
            ListenerName::Submissions => Policy {
                implicit_tls: true,
                tls_required: true,
                auth: true,
            },
            // Transfer (25), and anything else given to the MTA: STARTTLS offered, no AUTH.
            _ => Policy {
                implicit_tls: false,
                tls_required: false,
                auth: false,
            },
        }
    }
}
