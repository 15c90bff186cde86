//! The SMTP driver against a scripted server on a loopback port: STARTTLS refused by a broken
//! handshake falls back to plain text, the pipelined transaction and RSET go over the wire.

use super::*;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Serves connections: the first `broken_tls` ones answer STARTTLS with 220 and hang up
/// (a failed handshake); the rest take mail. Returns every command line seen.
async fn scripted(listener: TcpListener, broken_tls: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for n in 0.. {
        let Ok(Ok((stream, _))) =
            tokio::time::timeout(Duration::from_secs(2), listener.accept()).await
        else {
            return seen;
        };
        let mut conn = BufReader::new(stream);
        conn.get_mut().write_all(b"220 scripted\r\n").await.unwrap();
        let mut line = String::new();
        while conn.read_line(&mut line).await.unwrap_or(0) > 0 {
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            seen.push(line.trim_end().to_string());
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-scripted\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n",
                "STAR" if n < broken_tls => {
                    conn.get_mut().write_all(b"220 go ahead\r\n").await.unwrap();
                    conn.get_mut()
                        .write_all(b"this is not TLS\r\n")
                        .await
                        .unwrap();
                    break;
                }
                "RCPT" if line.contains("<no@") => b"550 5.1.1 no such user\r\n",
                "DATA" => {
                    conn.get_mut().write_all(b"354 go\r\n").await.unwrap();
                    let mut body = Vec::new();
                    while !body.ends_with(b"\r\n.\r\n") {
                        let mut byte = [0u8; 1];
                        if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                            break;
                        }
                        body.push(byte[0]);
                    }
                    seen.push(String::from_utf8_lossy(&body).into_owned());
                    b"250 2.0.0 queued\r\n"
                }
                "QUIT" => b"221 bye\r\n",
                _ => b"250 ok\r\n",
            };
            conn.get_mut().write_all(reply).await.unwrap();
            line.clear();
        }
    }
    seen
}

fn dial_for(tls: &tls::ClientTls) -> Dial<'_> {
    Dial {
        hostname: "mx.here.test",
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(2),
            data: Duration::from_secs(2),
            final_reply: Duration::from_secs(2),
        },
        tls: TlsMode::Opportunistic,
        login: None,
        verify_config: tls.verify.clone(),
        any_config: tls.any.clone(),
    }
}

#[tokio::test]
async fn opportunistic_tls_falls_back_and_a_pipelined_transaction_runs() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hop = Hop {
        name: "mx.there.test".into(),
        addr: listener.local_addr().unwrap(),
    };
    let server = tokio::spawn(scripted(listener, 1));
    let tls = tls::ClientTls::new().unwrap();
    let dial = dial_for(&tls);
    let mut peer = connect_with_fallback(&dial, &hop).await.expect("fallback");
    assert!(!peer.tls && peer.caps.pipelining);
    let replies = peer
        .send_mail(
            "MAIL FROM:<a@here.test> SIZE=10\r\n".into(),
            vec![
                "RCPT TO:<b@there.test>\r\n".into(),
                "RCPT TO:<no@there.test>\r\n".into(),
            ],
            &crate::wire::to_wire(b"Subject: x\n\n.dot\n"),
        )
        .await
        .unwrap();
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![250, 550]);
    peer.quit().await;
    let seen = server.await.unwrap();
    assert_eq!(seen[..2], ["EHLO mx.here.test", "STARTTLS"], "{seen:?}");
    assert_eq!(
        seen[2..],
        [
            "EHLO mx.here.test",
            "MAIL FROM:<a@here.test> SIZE=10",
            "RCPT TO:<b@there.test>",
            "RCPT TO:<no@there.test>",
            "DATA",
            "Subject: x\r\n\r\n..dot\r\n.\r\n",
            "QUIT",
        ],
        "no STARTTLS on the second connection; the message dot-stuffed"
    );
}

#[tokio::test]
async fn required_tls_does_not_fall_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hop = Hop {
        name: "mx.there.test".into(),
        addr: listener.local_addr().unwrap(),
    };
    let server = tokio::spawn(scripted(listener, 1));
    let tls = tls::ClientTls::new().unwrap();
    let mut dial = dial_for(&tls);
    dial.tls = TlsMode::Required { verify: false };
    let err = connect_with_fallback(&dial, &hop)
        .await
        .err()
        .expect("no plain text");
    assert!(err.text.contains("TLS handshake"), "{}", err.text);
    let seen = server.await.unwrap();
    assert_eq!(seen, ["EHLO mx.here.test", "STARTTLS"]);
}
