# 150 sessions (more than the 128 inotify instances a user gets by default; SESSIONS when
# the test sets it) idle on INBOX; one SMTP delivery wakes every one of them. A session the
# server cannot serve fails the script within the timeout instead of hanging it.
N = globals().get("SESSIONS", 150)
socket.setdefaulttimeout(30)
sessions = []
for i in range(N):
    m = login993()
    ok(m.select("INBOX"))
    m.send(b"I IDLE\r\n")
    assert m.readline().startswith(b"+")
    sessions.append(m)
start = time.time()
with smtplib.SMTP(HOST, PSMTP, timeout=20) as s:
    s.sendmail("carol@remote.test", [USER], MSG)
for m in sessions:
    m.sock.settimeout(20)
    line = m.readline()
    assert b"EXISTS" in line, line
print("%d sessions woken within %.2fs" % (N, time.time() - start))
for m in sessions:
    m.send(b"DONE\r\n")
    assert m.readline().startswith(b"I OK"), "DONE"
    m.logout()
print("done")
