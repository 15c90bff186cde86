//! Outbound delivery between real Postern instances: instance A (domain a.test) sends to
//! B (b.test) and C (c.test, on 127.0.0.2) found through MX records served by the harness's
//! DNS responder (`harness::dns`), with `[dns] nameservers` and `[outbound] port` pointing A
//! at them. Mail is submitted with Python's smtplib; bounces are parsed as RFC 3464 reports
//! with mail-parser; DKIM signatures are verified with mail-auth against TXT records served
//! by the same responder.

use harness::dns::{DnsServer, Record};
use harness::{Server, Setup, python, wait_until};
use mail_parser::MimeHeaders;

const SUBMIT: &str = r#"
import smtplib, ssl, sys
port, user, password, sender = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rcpts = sys.argv[5].split(",")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port)
s.starttls(context=ctx)
s.login(user, password)
msg = "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nHello from A.\r\n" % (sender, rcpts[0], sys.argv[6])
if sys.argv[6] == "big":
    msg += ("x" * 70 + "\r\n") * 2000
options = sys.argv[7].split() if len(sys.argv) > 7 else []
print("refused", s.sendmail(sender, rcpts, msg, rcpt_options=options))
s.quit()
"#;

/// Submits a message on `server`'s port 587 as alice@a.test.
fn submit(server: &Server, sender: &str, rcpts: &[&str], subject: &str) {
    submit_with(server, sender, rcpts, subject, "");
}

/// The same with RCPT parameters (e.g. "NOTIFY=DELAY,FAILURE").
fn submit_with(server: &Server, sender: &str, rcpts: &[&str], subject: &str, options: &str) {
    let port = server.setup().port("submission").to_string();
    let joined = rcpts.join(",");
    let args = [
        &port,
        "alice@a.test",
        "alice-pw",
        sender,
        &joined,
        subject,
        options,
    ];
    let (status, out, err) = python(SUBMIT, &args);
    assert!(status.success(), "submission failed:\n{out}\n{err}");
    assert!(out.contains("refused {}"), "{out}");
}

fn dns() -> DnsServer {
    let lo = |s: &str| Record::Ip(s.parse().unwrap());
    DnsServer::start(vec![
        ("a.test", Record::Mx(10, "mx.a.test".into())),
        ("mx.a.test", lo("127.0.0.1")),
        ("b.test", Record::Mx(10, "mx.b.test".into())),
        ("mx.b.test", lo("127.0.0.1")),
        ("c.test", Record::Mx(10, "mx.c.test".into())),
        ("mx.c.test", lo("127.0.0.2")),
        ("nullmx.test", Record::Mx(0, ".".into())),
    ])
}

/// Instance A: sends to MX hosts on `port`, retries every second, warns of delays after one
/// (to those who ask with NOTIFY=DELAY).
fn instance_a(dns: &DnsServer, port: u16, more: &str) -> Setup {
    let extra = format!(
        "[dns]\nnameservers = [\"{}\"]\n\n[outbound]\nport = {port}\nconnect_timeout = \"2s\"\n\n[queue]\nretry_min = \"1s\"\nretry_max = \"2s\"\ndelay_warning = \"1s\"\n\n[submission]\nrestrict_sender = false\n\n{more}",
        dns.addr
    );
    let setup = Setup::new(&extra).named("mx.a.test", &["a.test"]);
    setup.add_user("alice@a.test", "alice-pw");
    setup
}

/// An instance receiving for `domain` (bob@ and relay@ exist).
fn receiver(host: &str, domain: &str) -> Setup {
    // SIZE 100000 (RFC 1870) so a "big" message (140 KB) is too big for it.
    let extra = "[submission]\nrestrict_sender = false\n\n[limits]\nmessage_size = 100000\n";
    let setup = Setup::new(extra).named(host, &[domain]);
    setup.add_user(&format!("bob@{domain}"), "bob-pw");
    setup.add_user(&format!("relay@{domain}"), "relay-pw");
    setup
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// The message/delivery-status part of a DSN, after checking the report's structure.
fn delivery_status(bytes: &[u8]) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(bytes)
        .expect("a MIME message");
    let ct = msg.content_type().expect("content type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("report")),
        "RFC 3464 §2: multipart/report"
    );
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let status = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("delivery-status"))
        })
        .expect("a message/delivery-status part");
    let text = String::from_utf8_lossy(bytes);
    let start = status.raw_body_offset() as usize;
    let end = status.raw_end_offset() as usize;
    text[start..end].to_string()
}

#[test]
fn mx_delivery_refusal_bounce_null_mx_and_no_bounce_of_a_bounce() {
    let dns = dns();
    let b = receiver("mx.b.test", "b.test").start();
    let a = instance_a(&dns, b.setup().port("smtp"), "").start();

    submit(&a, "alice@a.test", &["bob@b.test"], "first");
    wait_until("the message in bob's Maildir on B", || {
        b.maildir("bob@b.test").len() == 1
    });
    let text = String::from_utf8(read(&b.maildir("bob@b.test")[0])).unwrap();
    assert!(text.contains("Subject: first"), "{text}");
    assert!(
        text.contains("from mx.a.test") && text.contains("by mx.b.test (Postern)"),
        "{text}"
    );
    assert!(
        text.contains("with ESMTPS"),
        "opportunistic STARTTLS was used: {text}"
    );

    // 550 at RCPT: a DSN to the sender's mailbox on A.
    submit(&a, "alice@a.test", &["nobody@b.test"], "refused");
    wait_until("a bounce in alice's Maildir", || {
        a.maildir("alice@a.test").len() == 1
    });
    let dsn = read(&a.maildir("alice@a.test")[0]);
    let status = delivery_status(&dsn);
    for field in [
        "Reporting-MTA: dns; mx.a.test",
        "Final-Recipient: rfc822; nobody@b.test",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx.b.test",
        "Diagnostic-Code: smtp; 550",
    ] {
        assert!(status.contains(field), "{field:?} missing:\n{status}");
    }
    let dsn_text = String::from_utf8_lossy(&dsn);
    assert!(dsn_text.contains("Subject: refused"), "original returned");
    assert!(
        dsn_text.contains("Return-Path: <>"),
        "from the null sender: {dsn_text}"
    );

    // A null MX (RFC 7505): bounced at the first attempt.
    let before = a.log_len();
    submit(&a, "alice@a.test", &["x@nullmx.test"], "null");
    wait_until("a second bounce", || a.maildir("alice@a.test").len() == 2);
    let files = a.maildir("alice@a.test");
    let second = files
        .iter()
        .map(|p| read(p))
        .find(|m| String::from_utf8_lossy(m).contains("x@nullmx.test"))
        .expect("the null MX bounce");
    assert!(delivery_status(&second).contains("Status: 5.1.10"));
    let log = a.log_text();
    assert!(
        !log[before..].contains("queue.deferred"),
        "no retry for a null MX:\n{log}"
    );

    // Bigger than B's SIZE: refused before MAIL (RFC 1870 §6), bounced with 5.3.4.
    submit(&a, "alice@a.test", &["bob@b.test"], "big");
    wait_until("a third bounce", || a.maildir("alice@a.test").len() == 3);
    let too_big = a
        .maildir("alice@a.test")
        .iter()
        .map(|p| read(p))
        .find(|m| delivery_status(m).contains("Status: 5.3.4"));
    assert!(too_big.is_some(), "a 5.3.4 bounce for the big message");
    assert_eq!(b.maildir("bob@b.test").len(), 1);

    // A failed message from the null sender is not bounced.
    let before = a.log_len();
    submit(&a, "", &["nobody@b.test"], "bounce of a bounce");
    a.wait_log("bounce.dropped", before);
    wait_until("A's queue to empty", || a.queued().is_empty());
    assert_eq!(a.maildir("alice@a.test").len(), 3);
}

#[test]
fn deferred_partial_restart_then_delivered_once() {
    let dns = dns();
    let b = receiver("mx.b.test", "b.test").start();
    let port = b.setup().port("smtp");
    // C answers on 127.0.0.2 on the same port, once started.
    let mut c_setup = receiver("mx.c.test", "c.test").listen_ip("127.0.0.2");
    for (name, p) in c_setup.ports.iter_mut() {
        if *name == "smtp" {
            *p = port;
        }
    }
    c_setup.write_config();
    let a = instance_a(&dns, port, "").start();

    submit_with(
        &a,
        "alice@a.test",
        &["bob@b.test", "bob@c.test"],
        "partial",
        "NOTIFY=DELAY,FAILURE",
    );
    wait_until("bob@b.test served", || b.maildir("bob@b.test").len() == 1);
    let log = a.wait_log("queue.deferred", 0);
    assert!(log.contains("bob@c.test"), "{log}");
    // Retried at least once more, then A restarts in the middle of the schedule.
    let after = a.log_len();
    a.wait_log("queue.deferred", after);
    let a = a.restart();
    a.wait_log("queue.recovered", 0);
    a.wait_log("queue.deferred", 0);
    wait_until("the delay warning", || a.maildir("alice@a.test").len() == 1);
    wait_until("only the waiting message queued", || {
        a.queued().iter().filter(|f| f.ends_with(".msg")).count() == 1
    });

    let c = c_setup.start();
    wait_until("bob@c.test served", || c.maildir("bob@c.test").len() == 1);
    wait_until("A's queue to empty", || a.queued().is_empty());
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        b.maildir("bob@b.test").len(),
        1,
        "the recipient that accepted got the message once"
    );
    assert_eq!(c.maildir("bob@c.test").len(), 1);
    // One delay warning (RFC 3461 NOTIFY=DELAY), for the waiting recipient only, and no
    // second one after the restart.
    let mail = a.maildir("alice@a.test");
    assert_eq!(mail.len(), 1, "one delay warning, no bounce");
    let warning = read(&mail[0]);
    let status = delivery_status(&warning);
    assert!(
        status.contains("Final-Recipient: rfc822; bob@c.test"),
        "{status}"
    );
    assert!(status.contains("Action: delayed"), "{status}");
    assert!(!status.contains("bob@b.test"), "{status}");
}

fn relay_config(b: &Server, listener: &str, tls: &str, password: &str, dir: &str) -> String {
    let file = format!("{dir}/relay-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    format!(
        "[relay]\nhost = \"127.0.0.1:{}\"\nusername = \"relay@b.test\"\npassword_file = \"{file}\"\ntls_verify = false\ntls = \"{tls}\"\n",
        b.setup().port(listener)
    )
}

#[test]
fn relay_host_with_implicit_tls_and_starttls_and_a_wrong_password() {
    let dns = dns();
    let b = receiver("mx.b.test", "b.test").start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap().to_string();
    for (n, (listener, tls)) in [("submissions", "implicit"), ("submission", "auto")]
        .into_iter()
        .enumerate()
    {
        let extra = relay_config(&b, listener, tls, "relay-pw", &dir);
        // MX lookups would lead nowhere: only the relay can deliver.
        let a = instance_a(&dns, 9, &extra).start();
        submit(&a, "alice@a.test", &["bob@b.test"], listener);
        wait_until("the relayed message", || {
            b.maildir("bob@b.test").len() == n + 1
        });
        wait_until("A's queue to empty", || a.queued().is_empty());
    }
    let text: String = b
        .maildir("bob@b.test")
        .iter()
        .map(|p| String::from_utf8(read(p)).unwrap())
        .collect();
    assert!(
        text.contains("with ESMTPSA"),
        "authenticated over TLS: {text}"
    );

    let extra = relay_config(&b, "submission", "auto", "wrong", &dir);
    let a = instance_a(&dns, 9, &extra).start();
    submit(&a, "alice@a.test", &["bob@b.test"], "wrong password");
    let log = a.wait_log("authentication as \"relay@b.test\"", 0);
    assert!(log.contains("queue.deferred"), "{log}");
    assert!(log.contains("535"), "the relay's answer is logged: {log}");
    assert_eq!(b.maildir("bob@b.test").len(), 2);
    assert_eq!(a.queued().iter().filter(|f| f.ends_with(".msg")).count(), 1);
    drop(a);

    // tls_verify = true: the relay's self-signed certificate is refused, the mail deferred.
    let extra = relay_config(&b, "submissions", "implicit", "relay-pw", &dir)
        .replace("tls_verify = false", "tls_verify = true");
    let a = instance_a(&dns, 9, &extra).start();
    submit(&a, "alice@a.test", &["bob@b.test"], "unverified relay");
    let log = a.wait_log("queue.deferred", 0);
    assert!(log.contains("TLS handshake with 127.0.0.1 failed"), "{log}");
    assert_eq!(b.maildir("bob@b.test").len(), 2);
}

#[test]
fn remote_alias_targets_are_forwarded_once() {
    let dns = dns();
    let b = receiver("mx.b.test", "b.test").start();
    let setup = instance_a(&dns, b.setup().port("smtp"), "");
    harness::write(
        &setup.path("etc/aliases"),
        "team@a.test: alice@a.test, bob@b.test\nout@a.test: relay@b.test\n",
    );
    let a = setup.start();
    submit(
        &a,
        "alice@a.test",
        &["team@a.test", "out@a.test"],
        "to the team",
    );
    wait_until("bob@b.test served", || b.maildir("bob@b.test").len() == 1);
    wait_until("relay@b.test served", || {
        b.maildir("relay@b.test").len() == 1
    });
    wait_until("alice served", || a.maildir("alice@a.test").len() == 1);
    wait_until("A's queue to empty", || a.queued().is_empty());
    let a = a.restart();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(b.maildir("bob@b.test").len(), 1, "forwarded once");
    assert_eq!(b.maildir("relay@b.test").len(), 1);
    assert!(a.queued().is_empty());
    let text = String::from_utf8(read(&b.maildir("bob@b.test")[0])).unwrap();
    assert!(text.contains("Return-Path: <alice@a.test>"), "{text}");
}

/// `postern dkim generate DOMAIN` for this setup: the `[dkim] keys` entry it printed and the
/// TXT record's (name, value).
fn dkim_generate(
    setup: &Setup,
    domain: &str,
    selector: &str,
    algorithm: &str,
) -> (String, String, String) {
    let args = [
        "dkim",
        "generate",
        domain,
        "--selector",
        selector,
        "--algorithm",
        algorithm,
    ];
    let (status, out, err) = setup.postern(&args, "");
    assert!(status.success(), "dkim generate failed: {out}{err}");
    let entry = out
        .lines()
        .find(|l| l.trim_start().starts_with("{ domain"))
        .expect("the keys entry")
        .trim()
        .to_string();
    let record = out
        .lines()
        .find(|l| l.contains(" IN TXT "))
        .expect("the TXT record");
    let (name, rest) = record.split_once(". IN TXT ( ").unwrap();
    let value: String = rest
        .trim_end_matches(" )")
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    let (again, _, _) = setup.postern(&args, "");
    assert!(!again.success(), "an existing key is never replaced");
    (entry, name.to_string(), value)
}

/// Whether `message` (LF line ends, as in a Maildir) carries a DKIM signature that verifies
/// with the keys published on `dns`.
fn dkim_passes(dns: &DnsServer, message: &[u8]) -> bool {
    use mail_auth::hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
    };
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.addr.port();
    let server = NameServerConfig::new(dns.addr.ip(), true, vec![udp]);
    let config = ResolverConfig::from_name_servers(vec![server]);
    let authenticator =
        mail_auth::MessageAuthenticator::new(config, ResolverOpts::default()).expect("a resolver");
    let crlf: Vec<u8> = message
        .iter()
        .flat_map(|&b| {
            if b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![b]
            }
        })
        .collect();
    let parsed = mail_auth::AuthenticatedMessage::parse(&crlf).expect("a message");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outputs = runtime.block_on(authenticator.verify_dkim(&parsed));
    outputs
        .iter()
        .any(|o| *o.result() == mail_auth::DkimResult::Pass)
}

#[test]
fn submitted_mail_is_dkim_signed_and_verifies() {
    let b = receiver("mx.b.test", "b.test").start();
    let port = b.setup().port("smtp");
    // Keys made by `postern dkim generate`; the DNS table needs them before A's config can
    // name the responder, so the config is written twice.
    let probe = Setup::new("").named("mx.a.test", &["a.test", "a2.test"]);
    let (ed_entry, ed_name, ed_value) = dkim_generate(&probe, "a.test", "ed", "ed25519");
    let (rsa_entry, rsa_name, rsa_value) = dkim_generate(&probe, "a2.test", "rsa", "rsa");
    assert!(ed_value.starts_with("v=DKIM1; k=ed25519; p="), "{ed_value}");
    let lo = |s: &str| Record::Ip(s.parse().unwrap());
    let dns = DnsServer::start(vec![
        ("b.test", Record::Mx(10, "mx.b.test".into())),
        ("mx.b.test", lo("127.0.0.1")),
        (&ed_name, Record::Txt(ed_value)),
        (&rsa_name, Record::Txt(rsa_value)),
    ]);
    let extra = format!("[dkim]\nkeys = [{ed_entry}, {rsa_entry}]\n");
    let a = instance_a(&dns, port, &extra).named("mx.a.test", &["a.test", "a2.test"]);
    let a = a.start();

    submit(&a, "alice@a.test", &["bob@b.test"], "signed with ed25519");
    wait_until("the first message", || b.maildir("bob@b.test").len() == 1);
    let first = read(&b.maildir("bob@b.test")[0]);
    let text = String::from_utf8_lossy(&first).to_string();
    assert!(text.contains("a=ed25519-sha256; s=ed; d=a.test"), "{text}");
    assert!(
        dkim_passes(&dns, &first),
        "the Ed25519 signature verifies:\n{text}"
    );
    let mut tampered = first.clone();
    let at = text.find("Hello from A.").unwrap();
    tampered[at] = b'J';
    assert!(!dkim_passes(&dns, &tampered), "a changed body fails");

    submit(&a, "alice@a2.test", &["bob@b.test"], "signed with rsa");
    wait_until("the second message", || b.maildir("bob@b.test").len() == 2);
    let second = b
        .maildir("bob@b.test")
        .iter()
        .map(|p| read(p))
        .find(|m| String::from_utf8_lossy(m).contains("signed with rsa"))
        .unwrap();
    let text = String::from_utf8_lossy(&second).to_string();
    assert!(text.contains("a=rsa-sha256; s=rsa; d=a2.test"), "{text}");
    assert!(
        dkim_passes(&dns, &second),
        "the RSA signature verifies:\n{text}"
    );
    assert!(!a.log_text().contains("dkim.sign_failed"));
}
