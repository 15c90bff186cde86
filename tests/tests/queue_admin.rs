//! `postern queue list|show|retry|flush|delete` against a real server whose outbound
//! destination is down: messages stay deferred (retries an hour apart), the verbs show them and
//! trigger attempts (seen in the log), a second instance brought up receives what `flush`
//! sends, a deleted message is never delivered, and a non-root peer is refused. Mail is
//! submitted with Python's smtplib; MX records come from the harness's DNS responder.

use std::process::{Command, Stdio};

use harness::dns::{DnsServer, Record};
use harness::{Server, Setup, python, wait_output, wait_until};

const SUBMIT: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
msg = "From: <alice@a.test>\r\nTo: <bob@b.test>\r\nSubject: %s\r\n\r\nHello.\r\n" % sys.argv[2]
print("refused", s.sendmail("alice@a.test", ["bob@b.test"], msg))
s.quit()
"#;

/// Submits a message to bob@b.test as alice@a.test on A's submission port; returns its queue
/// id once the first attempt was deferred.
fn submit(a: &Server, subject: &str) -> String {
    let before = a.log_len();
    let port = a.setup().port("submission").to_string();
    let script = SUBMIT.replace(
        "s = smtplib.SMTP(\"127.0.0.1\", int(sys.argv[1]))",
        "import ssl\nctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\ns = smtplib.SMTP(\"127.0.0.1\", int(sys.argv[1]))\ns.starttls(context=ctx)\ns.login(\"alice@a.test\", \"alice-pw\")",
    );
    let (status, out, err) = python(&script, &[&port, subject]);
    assert!(status.success(), "submission failed:\n{out}\n{err}");
    let log = a.wait_log("queue.deferred", before);
    queue_id_in(&log[before..])
}

/// The queue id of the first `queue.deferred` line of `log`.
fn queue_id_in(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("queue.deferred"))
        .expect("a deferred line");
    let at = line.find("id=").expect("an id") + 3;
    line[at..]
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn queue(a: &Server, args: &[&str]) -> (bool, String) {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    let (status, out, err) = a.setup().postern(&all, "");
    (status.success(), format!("{out}{err}"))
}

#[test]
fn list_show_retry_flush_delete_and_refuse_strangers() {
    let lo = |s: &str| Record::Ip(s.parse().unwrap());
    let dns = DnsServer::start(vec![
        ("b.test", Record::Mx(10, "mx.b.test".into())),
        ("mx.b.test", lo("127.0.0.1")),
    ]);
    // B's port is known before B runs: until it starts, A's attempts are refused.
    let b_setup =
        Setup::new("[submission]\nrestrict_sender = false\n").named("mx.b.test", &["b.test"]);
    b_setup.add_user("bob@b.test", "bob-pw");
    let port = b_setup.port("smtp");
    let extra = format!(
        "[dns]\nnameservers = [\"{}\"]\n\n[outbound]\nport = {port}\nconnect_timeout = \"2s\"\n\n[queue]\nretry_min = \"1h\"\nretry_max = \"1h\"\n\n[submission]\nrestrict_sender = false\n",
        dns.addr
    );
    let a_setup = Setup::new(&extra).named("mx.a.test", &["a.test"]);
    a_setup.add_user("alice@a.test", "alice-pw");
    let mut a = a_setup.start();
    let keep = submit(&a, "keep-me");
    let drop = submit(&a, "drop-me");

    // list: both, each recipient pending with the last error and the next attempt.
    let (ok, out) = queue(&a, &["list"]);
    assert!(ok, "{out}");
    println!("postern queue list:\n{out}");
    for id in [&keep, &drop] {
        assert!(out.contains(id.as_str()), "{id} listed:\n{out}");
    }
    assert!(out.contains("alice@a.test"), "{out}");
    assert!(out.contains("pending    bob@b.test (attempts 1: "), "{out}");
    assert!(out.contains("next attempt 20"), "{out}");
    assert!(out.contains("-- 2 message(s)"), "{out}");

    // show: the envelope and the header section, not the body.
    let (ok, out) = queue(&a, &["show", &drop]);
    assert!(ok, "{out}");
    println!("postern queue show:\n{out}");
    assert!(
        out.contains("bob@b.test") && out.contains("alice@a.test"),
        "{out}"
    );
    assert!(
        out.contains("Subject: drop-me") && out.contains("Received: from"),
        "{out}"
    );
    assert!(!out.contains("Hello."), "no body:\n{out}");
    let (ok, out) = queue(&a, &["show", "NOSUCHID"]);
    assert!(!ok && out.contains("no such message"), "{out}");
    let (ok, out) = queue(&a, &["show", "../../etc/passwd"]);
    assert!(!ok && out.contains("no such message"), "{out}");

    // retry: one more attempt of that message, at once (not in an hour).
    let before = a.log_len();
    let (ok, out) = queue(&a, &["retry", &keep]);
    assert!(ok && out.contains("1 message(s)"), "{out}");
    let log = a.wait_log("queue.deferred", before);
    assert_eq!(queue_id_in(&log[before..]), keep);
    assert!(log[before..].contains("queue.retry"), "{}", &log[before..]);

    // flush: both tried again.
    let before = a.log_len();
    let (ok, out) = queue(&a, &["flush"]);
    assert!(ok && out.contains("2 message(s)"), "{out}");
    wait_until("two more attempts", || {
        a.log_text()[before..].matches("queue.deferred").count() >= 2
    });

    // delete: gone from the queue and the list.
    let (ok, out) = queue(&a, &["delete", &drop]);
    assert!(ok && out.contains("deleted"), "{out}");
    a.wait_log("queue.deleted", 0);
    let (ok, out) = queue(&a, &["list"]);
    assert!(
        ok && !out.contains(drop.as_str()) && out.contains("-- 1 message(s)"),
        "{out}"
    );
    let (ok, out) = queue(&a, &["delete", &drop]);
    assert!(!ok && out.contains("no such message"), "{out}");

    strangers_are_refused(&a);
    bad_frames_get_errors_and_the_connection_keeps_working(&a);

    // B comes up; flush delivers the kept message only.
    let b = b_setup.start();
    let (ok, out) = queue(&a, &["flush"]);
    assert!(ok && out.contains("1 message(s)"), "{out}");
    wait_until("bob@b.test served", || b.maildir("bob@b.test").len() == 1);
    wait_until("A's queue to empty", || a.queued().is_empty());
    std::thread::sleep(std::time::Duration::from_secs(1));
    let got = b.maildir("bob@b.test");
    assert_eq!(got.len(), 1, "the deleted message never arrives");
    let text = std::fs::read_to_string(&got[0]).unwrap();
    assert!(text.contains("Subject: keep-me"), "{text}");

    // With the MTA stopped, list reads the directory and says so.
    a.stop();
    let (status, out, err) = a.setup().postern(&["queue", "list"], "");
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("postern-mta is not reachable") && out.contains("-- 0 message(s)"),
        "{out}"
    );
    let (status, out, err) = a.setup().postern(&["queue", "flush"], "");
    assert!(
        !status.success() && err.contains("cannot reach postern-mta"),
        "{out}{err}"
    );
    a.assert_no_panic();
}

/// A user other than root (or the server's own) cannot use the queue socket: the file is
/// 0600 root, and with the mode opened the MTA still refuses the peer (SO_PEERCRED).
fn strangers_are_refused(a: &Server) {
    if !harness::is_root() {
        println!("SKIP stranger check: needs root to run a client as another user");
        return;
    }
    let as_nobody = |a: &Server| {
        let child = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(a.setup().program())
            .args(["queue", "flush", "--config"])
            .arg(&a.setup().config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("setpriv (util-linux)");
        let (status, out, err) = wait_output(child, std::time::Duration::from_secs(30));
        (status.success(), format!("{out}{err}"))
    };
    let (ok, out) = as_nobody(a);
    assert!(!ok, "nobody may not flush:\n{out}");
    let sock = a.setup().path("run/queue.sock");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = a.log_len();
    let (ok, out) = as_nobody(a);
    assert!(!ok && out.contains("closed the connection"), "{out}");
    let log = a.wait_log("control.peer_refused", before);
    assert!(!log[before..].contains("queue.flush"), "{log}");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Speaks the protocol by hand: a malformed or unknown request gets an error reply with the
/// reason, and the next good request on the same connection is answered.
fn bad_frames_get_errors_and_the_connection_keeps_working(a: &Server) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(a.setup().path("run/queue.sock")).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(
        line.contains("\"service\":\"postern-queue\"") && line.contains("\"version\":1"),
        "{line}"
    );
    w.write_all(b"{\"service\":\"postern-queue\",\"version\":1,\"minor\":0}\n")
        .unwrap();
    for bad in [
        "not json",
        r#"{"op":"purge","id":5}"#,
        r#"{"op":"list","id":6,"all":true}"#,
    ] {
        w.write_all(format!("{bad}\n").as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(
            line.contains("\"reply\":\"error\"") && line.contains("malformed request"),
            "{bad}: {line}"
        );
    }
    w.write_all(b"{\"op\":\"list\",\"id\":42}\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("{\"reply\":\"list\",\"id\":42"), "{line}");
}
