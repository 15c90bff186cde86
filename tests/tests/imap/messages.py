# Folder CRUD, APPEND with APPENDUID, FETCH of sections, SEARCH, STORE, COPY/MOVE with
# COPYUID, EXPUNGE, STATUS.
m = login993()
ok(m.create("Projects/2024"))
ok(m.create("Work"))
names = b"\n".join(ok(m.list()))
assert b'Projects/2024' in names and b"\\HasChildren" in names, names
ok(m.rename("Work", "Job"))
names = b"\n".join(ok(m.list('""', "%")))
assert b"Job" in names and b"Work" not in names, names
ok(m.delete("Job"))
typ, _ = m.delete("Job")
assert typ == "NO"
ok(m.subscribe("Projects/2024"))
assert b"Projects/2024" in b"\n".join(ok(m.lsub()))

data = ok(m.append("INBOX", r"(\Flagged)", None, MSG))
validity, uid1 = code(data, "APPENDUID")
data = ok(m.append("INBOX", None, None, MSG.replace(b"zebra", b"lion").replace(b"greetings", b"second")))
assert code(data, "APPENDUID") == [validity, str(int(uid1) + 1)]
typ, data = m.append("Nope", None, None, MSG)
assert typ == "NO" and b"TRYCREATE" in data[0], data

typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"2"], data
typ, data = m.fetch("1", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert b"Subject: greetings" in data[0][1], data
assert b"\\Flagged" in data[0][0] and ("RFC822.SIZE %d" % len(MSG)).encode() in data[0][0], data
typ, data = m.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
assert b'"greetings"' in data[0] and b'"bob" "example.test"' in data[0], data
assert b'("text" "plain"' in data[0], data
typ, data = m.fetch("1", "(BODY[])")
assert data[0][1] == MSG, data
typ, data = m.fetch("1", "(FLAGS)")
assert b"\\Seen" in data[0], data  # a BODY[] fetch sets \Seen
typ, data = m.fetch("2", "(BODY.PEEK[TEXT]<6.5>)")
assert data[0][1] == b"Alice", data

assert ok(m.search(None, "BODY", "ZEBRA")) == [b"1"]
assert ok(m.search(None, "SUBJECT", "second")) == [b"2"]
assert ok(m.search(None, "FROM", "bob")) == [b"1 2"]
assert ok(m.search(None, "FLAGGED")) == [b"1"]
assert ok(m.search(None, "NOT", "SEEN")) == [b"2"]
assert ok(m.search(None, "OR", "FLAGGED", "LARGER", "100000")) == [b"1"]
assert ok(m.uid("SEARCH", "SENTON", "1-Jan-2024")) == [("%s %d" % (uid1, int(uid1) + 1)).encode()]
typ, data = m.uid("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
esearch = m.untagged_responses.pop("ESEARCH")[0]
assert typ == "OK" and b"UID" in esearch and b"COUNT 2" in esearch and (b"MIN " + uid1.encode()) in esearch, esearch

typ, data = m.store("2", "+FLAGS", r"(\Deleted $Important)")
assert b"\\Deleted" in data[0] and b"$Important" in data[0], data
assert ok(m.search(None, "KEYWORD", "$Important")) == [b"2"]

data = ok(m.copy("1", "Projects/2024"))
src, dst = code(data, "COPYUID")[1:]
assert src == uid1, data
typ, data = m.uid("MOVE", uid1, "Trash")
assert typ == "OK", data
text = b" ".join(x for x in m.untagged_responses.get("OK", []) if isinstance(x, bytes))
assert b"COPYUID" in text, m.untagged_responses
ok(m.expunge())
typ, data = m.select("INBOX")
assert data == [b"0"], data
status = ok(m.status("Trash", "(MESSAGES UIDNEXT UNSEEN SIZE)"))
assert b"MESSAGES 1" in status[0], status
status = ok(m.status("Projects/2024", "(MESSAGES)"))
assert b"MESSAGES 1" in status[0], status
ok(m.close())
m.logout()
print("done")
