//! The wire layer against real clients we did not write: Python's imaplib and curl talk to a
//! loopback server made of `Conn` and canned answers (the session logic is not here yet).
//! This checks that what they send parses, and that the `+` continuation comes when they
//! wait for it (imaplib's APPEND and AUTHENTICATE). A missing tool skips with a reason.

use std::process::Stdio;
use std::time::Duration;

use imapd::command::CommandBody;
use imapd::conn::{Conn, Input, Line};
use imapd::frame::Limits;
use imapd::response::{Data, Response, Status, Untagged};
use tokio::net::TcpListener;

const CAPS: &[&str] = &[
    "IMAP4rev1",
    "AUTH=PLAIN",
    "LITERAL+",
    "UIDPLUS",
    "MOVE",
    "IDLE",
];

/// Serves one connection with canned answers; returns the names of the commands it parsed,
/// or the first error.
async fn serve_one(listener: &TcpListener) -> Result<Vec<String>, String> {
    let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
    let mut conn = Conn::new(stream, Limits::default(), Duration::from_secs(10));
    let greeting = Response::Untagged {
        status: Untagged::Ok,
        code: None,
        text: "ready",
    };
    conn.send(&greeting);
    let mut seen = Vec::new();
    loop {
        let cmd = match conn.command().await.map_err(|e| e.to_string())? {
            Input::Command(cmd) => cmd,
            Input::Eof { .. } => return Ok(seen),
            Input::Bad(e) => {
                seen.push(format!("BAD {:?}", e.kind));
                e.encode(conn.out());
                continue;
            }
            other => return Err(format!("{other:?}")),
        };
        seen.push(cmd.body.name().to_string());
        match &cmd.body {
            CommandBody::Capability => conn.send(&Response::Data(Data::Capability(CAPS))),
            CommandBody::Authenticate { initial: None, .. } => {
                conn.send(&Response::Challenge(b""));
                conn.flush().await.map_err(|e| e.to_string())?;
                match conn.line(8192).await.map_err(|e| e.to_string())? {
                    Line::Complete(_) => {}
                    other => return Err(format!("AUTHENTICATE response: {other:?}")),
                }
            }
            CommandBody::Select { .. } => conn.send(&Response::Data(Data::Exists(0))),
            CommandBody::Logout => conn.send(&Response::Untagged {
                status: Untagged::Bye,
                code: None,
                text: "bye",
            }),
            _ => {}
        }
        conn.send(&Response::Tagged {
            tag: &cmd.tag,
            status: Status::Ok,
            code: None,
            text: "done",
        });
        if cmd.body == CommandBody::Logout {
            conn.flush().await.map_err(|e| e.to_string())?;
            return Ok(seen);
        }
    }
}

async fn run_client(program: &str, args: &[&str]) -> Option<std::process::Output> {
    let child = match tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            println!("SKIP: {program} is not available ({e}); Debian package python3 / curl");
            return None;
        }
    };
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output());
    Some(out.await.expect("client timed out").expect("client output"))
}

const IMAPLIB: &str = r#"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login("alice", 'pa ss"word\\')
m.logout()
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.authenticate("PLAIN", lambda _: b"\0alice\0secret")
m.select("INBOX")
m.search(None, "UNSEEN", "SUBJECT", '"hello world"')
m.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
m.uid("STORE", "1:3", "+FLAGS.SILENT", r"(\Seen \Flagged)")
m.append("INBOX", r"(\Seen)", imaplib.Time2Internaldate(1700000000), b"Subject: hi\r\n\r\nbody\r\n")
m.create('"Foo Bar"')
m.rename('"Foo Bar"', "Baz")
m.list('""', "*")
m.status("INBOX", "(MESSAGES UIDNEXT UNSEEN)")
m.copy("1:2", "Baz")
m.uid("MOVE", "3", "Baz")
m.expunge()
m.close()
m.delete("Baz")
m.logout()
"#;

/// Serves `n` connections one after the other.
async fn serve(listener: TcpListener, n: usize) -> Result<Vec<Vec<String>>, String> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(serve_one(&listener).await?);
    }
    Ok(all)
}

#[tokio::test]
async fn python_imaplib_commands_parse() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = tokio::spawn(serve(listener, 2));
    let Some(out) = run_client("python3", &["-c", IMAPLIB, &port]).await else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "imaplib failed: {stderr}");
    let seen = server.await.unwrap().unwrap();
    assert_eq!(seen[0], ["CAPABILITY", "LOGIN", "LOGOUT"]);
    assert_eq!(
        seen[1],
        [
            "CAPABILITY",
            "AUTHENTICATE",
            "SELECT",
            "SEARCH",
            "FETCH",
            "STORE",
            "APPEND",
            "CREATE",
            "RENAME",
            "LIST",
            "STATUS",
            "COPY",
            "MOVE",
            "EXPUNGE",
            "CLOSE",
            "DELETE",
            "LOGOUT"
        ]
    );
}

#[tokio::test]
async fn curl_commands_parse() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(listener, 2));
    let list_url = format!("imap://127.0.0.1:{port}/");
    let fetch_url = format!("imap://127.0.0.1:{port}/INBOX;UID=1");
    for url in [&list_url, &fetch_url] {
        let Some(out) = run_client("curl", &["-s", "-u", "alice:pa ss", url]).await else {
            server.abort();
            return;
        };
        // The canned server has no message to give: curl may complain about the FETCH, but
        // it must have sent its commands.
        let _ = out;
    }
    let seen = server.await.unwrap().unwrap();
    assert!(seen[0].contains(&"LIST".to_string()), "{seen:?}");
    assert!(
        seen[1].contains(&"SELECT".to_string()) && seen[1].contains(&"FETCH".to_string()),
        "{seen:?}"
    );
}
