# Two sessions on INBOX: flag changes and expunges of one reach the other as untagged
# FETCH / EXPUNGE; CONDSTORE's UNCHANGEDSINCE fails with MODIFIED after the other's change.
a = login993()
b = login993()
for i in range(3):
    ok(a.append("INBOX", None, None, MSG.replace(b"greetings", b"m%d" % i)))
ok(a.select("INBOX"))
validity = a.untagged_responses["UIDVALIDITY"][0].decode()
ok(b.select("INBOX"))
typ, data = a.fetch("1:3", "(UID MODSEQ)")
modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", d).group(1)) for d in data]
ok(b.store("2", "+FLAGS", r"(\Flagged)"))
ok(a.noop())
fetches = a.untagged_responses.get("FETCH", [])
assert any(b"\\Flagged" in f for f in fetches if isinstance(f, bytes)), a.untagged_responses
# CONDSTORE: message 2 changed after the modseq a saw.
typ, data = a._simple_command("STORE", "2", "(UNCHANGEDSINCE %d)" % modseqs[1], "+FLAGS", r"(\Seen)")
assert typ == "OK" and b"MODIFIED 2" in data[0], (typ, data)
typ, data = a._simple_command("STORE", "1", "(UNCHANGEDSINCE %d)" % modseqs[0], "+FLAGS", r"(\Seen)")
assert typ == "OK" and b"MODIFIED" not in data[0], (typ, data)
# b expunges message 1; a learns it at its next NOOP, not during a FETCH.
ok(b.store("1", "+FLAGS", r"(\Deleted)"))
ok(b.expunge())
a.untagged_responses.clear()
typ, data = a.fetch("3", "(UID)")
assert "EXPUNGE" not in a.untagged_responses, a.untagged_responses
ok(a.noop())
assert a.untagged_responses.get("EXPUNGE") == [b"1"], a.untagged_responses
typ, data = a.fetch("1:*", "(UID)")
assert len(data) == 2, data
# QRESYNC: a third client resyncs from the modseq it knew, learning the expunge and the
# flag change in one SELECT (RFC 7162 §3.2.5).
c = login993()
ok(c.enable("QRESYNC"))
typ, data = c._simple_command("SELECT", "INBOX", "(QRESYNC (%s %d))" % (validity, max(modseqs)))
assert typ == "OK", data
assert c.untagged_responses.get("VANISHED") == [b"(EARLIER) 1"], c.untagged_responses
fetches = [f for f in c.untagged_responses.get("FETCH", []) if isinstance(f, bytes)]
assert len(fetches) == 1 and b"UID 2 FLAGS (\\Flagged) MODSEQ" in fetches[0], fetches
c.logout()
a.logout()
b.logout()
print("done")
