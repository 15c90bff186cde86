//! What SMTP (RFC 5321) and LMTP (RFC 2033) servers share: the reply type with named reply
//! constants, the connection framing (`conn`), and the DATA receiver. Commands are
//! parsed by the `smtp-proto` crate. Only `conn` touches a socket.

pub mod conn;
mod data;
mod reply;

pub use data::{DataError, DataReceiver};
pub use reply::Reply;

/// Longest command line accepted, CRLF included. RFC 5321 §4.5.3.1.4 sets 512 octets as the
/// minimum to support; extensions (SIZE, DSN, SMTPUTF8 parameters) need more, so we accept up
/// to 2048 like Postfix's `line_length_limit`.
pub const MAX_COMMAND_LINE: usize = 2048;

/// Parses one command line (ending in LF) with `smtp-proto`.
pub fn parse_command(line: &[u8]) -> Result<smtp_proto::Request<String>, smtp_proto::Error> {
    smtp_proto::Request::parse(&mut line.iter()).map(smtp_proto::Request::into_owned)
}

/// The reply to a command `smtp-proto` could not parse.
pub fn reply_to_parse_error(e: &smtp_proto::Error) -> Reply {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => reply::UNKNOWN_COMMAND,
        E::InvalidSenderAddress => reply::BAD_SENDER_SYNTAX,
        E::InvalidRecipientAddress => reply::BAD_RECIPIENT_SYNTAX,
        E::InvalidParameter { .. } | E::UnsupportedParameter { .. } => reply::BAD_PARAMETER,
        _ => reply::SYNTAX_ERROR,
    }
}

pub mod replies {
    pub use super::reply::*;
}
