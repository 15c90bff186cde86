# IDLE on INBOX; a message sent by SMTP to the real server reaches the session as EXISTS
# within a few seconds (inotify on the folder's files).
m = login993()
ok(m.select("INBOX"))
m.send(b"I1 IDLE\r\n")
line = m.readline()
assert line.startswith(b"+"), line
start = time.time()
with smtplib.SMTP(HOST, PSMTP, timeout=20) as s:
    s.sendmail("carol@remote.test", [USER], MSG)
m.sock.settimeout(20)
while True:
    line = m.readline()
    print("idle:", line)
    if b"EXISTS" in line:
        break
print("woken after %.2fs" % (time.time() - start))
m.send(b"DONE\r\n")
line = m.readline()
assert line.startswith(b"I1 OK"), line
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert b"greetings" in data[0][1], data
m.logout()
print("done")
