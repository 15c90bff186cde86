# 143: STARTTLS and LOGINDISABLED before TLS, LOGIN refused in clear; wrong password; 993.
m = imaplib.IMAP4(HOST, P143)
assert "STARTTLS" in m.capabilities and "LOGINDISABLED" in m.capabilities, m.capabilities
assert "AUTH=PLAIN" not in m.capabilities
try:
    m.login(USER, PASSWORD)
    raise SystemExit("LOGIN accepted before TLS")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
    print("login refused in clear:", e)
m.starttls(ssl_context=CTX)
assert "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities, m.capabilities
started = time.time()
try:
    m.login(USER, "wrong password")
    raise SystemExit("wrong password accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
    print("wrong password:", e)
# authd's failure delay ([auth] fail_delay, 1s by default) is waited before the answer.
assert time.time() - started >= 0.9, time.time() - started
typ, data = m.login(USER, PASSWORD)
assert typ == "OK", data
assert b"CAPABILITY" in data[0] and b"IDLE" in data[0], data
ok(m.noop())
m.logout()

# 993 with AUTHENTICATE PLAIN (SASL-IR when imaplib sends it, else a continuation).
m = imaplib.IMAP4_SSL(HOST, P993, ssl_context=CTX)
assert "AUTH=PLAIN" in m.capabilities and "STARTTLS" not in m.capabilities
typ, _ = m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (USER, PASSWORD)).encode())
assert typ == "OK"
folders = ok(m.list())
names = b"\n".join(folders)
for want in [b"INBOX", b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk", b"\\Archive"]:
    assert want in names, names
m.logout()
print("done")
