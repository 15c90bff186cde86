# Shared by the imaplib scripts of tests/tests/imap.rs: ports and the user from argv,
# a TLS context that accepts the test's self-signed certificate, login helpers.
import imaplib, re, smtplib, socket, ssl, sys, time

P143, P993, PSUB, PSMTP = (int(a) for a in sys.argv[1:5])
USER, PASSWORD = sys.argv[5], sys.argv[6]
HOST = "127.0.0.1"
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE
MSG = (b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: greetings\r\n"
       b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@example.test>\r\n\r\n"
       b"Hello Alice,\r\nthe zebra is purple.\r\n")


def login993(user=None, password=None):
    m = imaplib.IMAP4_SSL(HOST, P993, ssl_context=CTX)
    m.login(user or USER, password or PASSWORD)
    return m


def ok(result):
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


def code(data, name):
    """The numbers of a response code like [APPENDUID 7 1] in the tagged text."""
    text = b" ".join(d if isinstance(d, bytes) else b"" for d in data).decode()
    found = re.search(r"\[" + name + r" ([^\]]*)\]", text)
    assert found, (name, text)
    return found.group(1).split()
