//! The message as it goes on the wire, shared by the LMTP and SMTP clients: LF to CRLF with
//! dot-stuffing (RFC 5321 §4.5.2), and whether a message needs SMTPUTF8 (RFC 6531 §3.4).
//! Pure functions, no I/O.

/// Whether the message really needs SMTPUTF8: a non-ASCII envelope address or header.
pub fn needs_smtputf8(env: &crate::session::Envelope, body: &[u8]) -> bool {
    let headers_end = body
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(body.len());
    !env.sender.is_ascii()
        || env.recipients.iter().any(|r| !r.address.is_ascii())
        || !body[..headers_end].is_ascii()
}

/// LF line ends to CRLF, dot-stuffed (RFC 5321 §4.5.2), with the end marker.
pub fn to_wire(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 40 + 5);
    let mut line_start = true;
    for &b in body {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
            line_start = true;
        } else {
            out.push(b);
            line_start = false;
        }
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_crlf_and_dot_stuffed() {
        assert_eq!(to_wire(b"a\n.b\n..\n"), b"a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(to_wire(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(to_wire(b""), b".\r\n");
    }
}
