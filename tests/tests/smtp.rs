//! postern-mta with real clients (Python's smtplib, swaks where installed): transfer on 25,
//! submission on 587 (STARTTLS + AUTH) and 465, the policy of each listener, relay refusals,
//! sender restrictions, PIPELINING, BDAT, SMTPUTF8, size limits; mail ends up in Maildirs.

use harness::*;

fn start() -> Server {
    let setup = Setup::new("[limits]\nmessage_size = 20000\n\n[queue]\nretry_min = \"1s\"\n");
    setup.add_user("alice@example.test", "alice-pw");
    setup.add_user("bob@example.test", "bob-pw");
    write(
        &setup.path("etc/aliases"),
        "info@example.test: alice@example.test, bob@example.test\nsales@example.test: alice@example.test\n",
    );
    setup.start()
}

/// Waits until `address` has `n` messages and returns them.
fn wait_mail(server: &Server, address: &str, n: usize) -> Vec<String> {
    wait_until(&format!("{n} message(s) for {address}"), || {
        server.maildir(address).len() >= n
    });
    server
        .maildir(address)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Runs a Python smtplib script with PORT25, PORT587, PORT465 and CAFILE defined.
fn smtp_script(server: &Server, body: &str) -> String {
    let s = server.setup();
    let script = format!(
        "import smtplib, ssl, sys\nPORT25={}\nPORT587={}\nPORT465={}\nCAFILE={:?}\nctx = ssl.create_default_context(cafile=CAFILE)\nctx.check_hostname = False\n{body}",
        s.port("smtp"),
        s.port("submission"),
        s.port("submissions"),
        s.path("tls/cert.pem").display().to_string()
    );
    let (status, out, err) = python(&script, &[]);
    assert!(status.success(), "python failed:\n{out}\n{err}");
    out
}

#[test]
fn transfer_on_25_delivers_to_local_users_and_refuses_relaying() {
    let server = start();
    let out = smtp_script(
        &server,
        r#"
s = smtplib.SMTP("127.0.0.1", PORT25)
code, caps = s.ehlo("client.example")
print("ehlo", code, "AUTH" in caps.decode(), "STARTTLS" in caps.decode(), "PIPELINING" in caps.decode())
print("mail", s.mail("sender@elsewhere.net")[0])
for r in ["alice@example.test", "info@example.test", "nobody@example.test", "victim@elsewhere.net",
          "victim%elsewhere.net@example.test", "elsewhere.net!victim@example.test", '"victim@elsewhere.net"@example.test']:
    print("rcpt", r, s.rcpt(r))
print("data", s.data(b"Subject: transfer\r\n\r\nHello over port 25.\r\n")[0])
print("auth", s.docmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw=="))
s.quit()
"#,
    );
    assert!(
        out.contains("ehlo 250 False True True"),
        "no AUTH on 25, STARTTLS offered:\n{out}"
    );
    assert!(out.contains("rcpt alice@example.test (250"), "{out}");
    assert!(out.contains("rcpt info@example.test (250"), "{out}");
    assert!(
        out.contains("rcpt nobody@example.test (550, b'5.1.1"),
        "{out}"
    );
    assert!(
        out.contains("rcpt victim@elsewhere.net (550, b'5.7.1"),
        "{out}"
    );
    assert!(
        out.contains("rcpt victim%elsewhere.net@example.test (550, b'5.7.1"),
        "{out}"
    );
    assert!(
        out.contains("rcpt elsewhere.net!victim@example.test (550, b'5.7.1"),
        "{out}"
    );
    assert!(
        out.contains("rcpt \"victim@elsewhere.net\"@example.test (550, b'5.7.1"),
        "{out}"
    );
    assert!(out.contains("data 250"), "{out}");
    assert!(out.contains("auth (503"), "{out}");
    let alice = wait_mail(&server, "alice@example.test", 1);
    let bob = wait_mail(&server, "bob@example.test", 1);
    assert_eq!(
        server.maildir("alice@example.test").len(),
        1,
        "alice once, though named twice"
    );
    assert!(
        alice[0].contains("Received: from client.example ([127.0.0.1])"),
        "{}",
        alice[0]
    );
    assert!(alice[0].contains("with ESMTP id "), "{}", alice[0]);
    assert!(bob[0].contains("Hello over port 25."));
    // Delivered messages leave the queue.
    wait_until("the queue to empty", || server.queued().is_empty());
}

#[test]
fn submission_requires_starttls_then_auth_and_relays_for_the_user() {
    let server = start();
    let out = smtp_script(
        &server,
        r#"
s = smtplib.SMTP("127.0.0.1", PORT587)
code, caps = s.ehlo("laptop")
print("plain-ehlo", "AUTH" in caps.decode(), "STARTTLS" in caps.decode())
print("auth-before-tls", s.docmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw=="))
print("mail-before-tls", s.docmd("MAIL FROM:<alice@example.test>"))
s.starttls(context=ctx)
code, caps = s.ehlo("laptop")
print("tls-ehlo", "AUTH PLAIN LOGIN" in caps.decode(), "STARTTLS" in caps.decode())
print("mail-before-auth", s.docmd("MAIL FROM:<alice@example.test>"))
try:
    s.login("alice@example.test", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("wrong-password", e.smtp_code)
s.login("alice@example.test", "alice-pw")
print("spoof", s.docmd("MAIL FROM:<bob@example.test>"))
print("own", s.docmd("MAIL FROM:<sales@example.test>"))
print("remote", s.rcpt("friend@elsewhere.net"))
print("local", s.rcpt("bob@example.test"))
print("data", s.data(b"Subject: submitted\r\n\r\nvia 587\r\n")[0])
s.quit()
s = smtplib.SMTP_SSL("127.0.0.1", PORT465, context=ctx)
code, caps = s.ehlo("laptop")
print("465-ehlo", "AUTH PLAIN LOGIN" in caps.decode(), "STARTTLS" in caps.decode())
s.login("bob@example.test", "bob-pw")
s.sendmail("bob@example.test", ["alice@example.test"], b"Subject: implicit\r\n\r\nvia 465\r\n")
s.quit()
"#,
    );
    assert!(
        out.contains("plain-ehlo False True"),
        "no AUTH before TLS on 587:\n{out}"
    );
    assert!(out.contains("auth-before-tls (530, b'5.7.0"), "{out}");
    assert!(out.contains("mail-before-tls (530, b'5.7.0"), "{out}");
    assert!(out.contains("tls-ehlo True False"), "{out}");
    assert!(out.contains("mail-before-auth (530, b'5.7.0"), "{out}");
    assert!(out.contains("wrong-password 535"), "{out}");
    assert!(out.contains("spoof (553, b'5.7.1"), "{out}");
    assert!(
        out.contains("own (250"),
        "an alias of alice is hers to use:\n{out}"
    );
    assert!(out.contains("remote (250"), "{out}");
    assert!(out.contains("data 250"), "{out}");
    assert!(out.contains("465-ehlo True False"), "{out}");
    let bob = wait_mail(&server, "bob@example.test", 1);
    assert!(bob[0].contains("with ESMTPSA id"), "{}", bob[0]);
    assert!(bob[0].contains("(using TLSv1."), "{}", bob[0]);
    let alice = wait_mail(&server, "alice@example.test", 1);
    assert!(alice[0].contains("via 465"), "{}", alice[0]);
    // The remote recipient stays queued: its MX lookup fails (the harness's resolver is a
    // closed loopback port), which defers it.
    let log = server.wait_log("event=\"queue.deferred\"", 0);
    assert!(log.contains("rcpt=friend@elsewhere.net"), "{log}");
    assert!(server.queued().iter().any(|f| f.ends_with(".msg")));
}
