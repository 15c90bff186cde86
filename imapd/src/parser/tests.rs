//! Parser and framing tests on client transcripts written out from RFC examples and from
//! what common clients (Python imaplib, Thunderbird, mutt, mbsync) send. Every input goes
//! through `testutil::trickle`: whole, split at every position, and byte by byte.

use super::*;
use crate::command::*;
use crate::frame::{Limits, NonSync, RefuseReason};
use crate::testutil::{Event, commands, drive, trickle};

fn one(input: &str) -> CommandBody {
    let mut cmds = commands(input.as_bytes());
    assert_eq!(cmds.len(), 1, "{input:?}");
    cmds.remove(0).body
}

fn ranges(r: &[(u32, u32)]) -> SequenceSet {
    SequenceSet::Ranges(
        r.iter()
            .map(|&(a, b)| (SeqNumber::Value(a), SeqNumber::Value(b)))
            .collect(),
    )
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn error(input: &[u8]) -> ParseError {
    match trickle(input, &Limits::default()).as_slice() {
        [Event::Command(Err(e))] => e.clone(),
        other => panic!("{other:?}"),
    }
}

/// Every command the server implements, in the forms clients send them: each must parse.
#[test]
fn every_command_parses() {
    let transcript = "\
PCKD1 CAPABILITY\r\n\
a001 login SMITH SESAME\r\n\
ABCD2 LOGIN user \"pass word\"\r\n\
2 authenticate PLAIN AGpvZQBzZWNyZXQ=\r\n\
a0002 AUTHENTICATE PLAIN\r\n\
a AUTHENTICATE PLAIN =\r\n\
a0001 STARTTLS\r\n\
a002 ENABLE IMAP4rev2\r\n\
4 enable UTF8=ACCEPT CONDSTORE QRESYNC\r\n\
3 ID (\"name\" \"Thunderbird\" \"version\" \"115.0\")\r\n\
a ID NIL\r\n\
A004 NAMESPACE\r\n\
A142 SELECT INBOX\r\n\
5 select \"INBOX\" (CONDSTORE)\r\n\
A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n\
B01 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:15,100:199 15:29,150:300)))\r\n\
A202 EXAMINE blurdybloop\r\n\
A003 CREATE owatagusiam/\r\n\
t1 CREATE \"Important Messages\" (USE (\\Important))\r\n\
A683 DELETE blurdybloop\r\n\
A684 RENAME blurdybloop sarasoop\r\n\
A002 SUBSCRIBE #news.comp.mail.mime\r\n\
A003 UNSUBSCRIBE #news.comp.mail.mime\r\n\
A682 LIST \"\" *\r\n\
a0003 LIST \"\" \"\"\r\n\
A02 LIST (SPECIAL-USE) \"\" \"*\"\r\n\
6 list (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)\r\n\
A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n\
A03 LIST () \"\" \"%\" RETURN (CHILDREN)\r\n\
A06 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"\r\n\
A07 LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")\r\n\
a0004 LSUB \"\" \"*\"\r\n\
A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n\
7 STATUS \"Sent\" (UIDNEXT MESSAGES UNSEEN RECENT SIZE DELETED HIGHESTMODSEQ APPENDLIMIT)\r\n\
A003 APPEND saved-messages (\\Seen) {5}\r\nhello\r\n\
ABCD6 APPEND INBOX (\\Seen) \" 1-Jan-2024 10:00:00 +0000\" {3}\r\nabc\r\n\
6 APPEND \"INBOX\" (\\Seen) {4+}\r\nabcd\r\n\
A003 APPEND Drafts (\\Seen \\Draft $MDNSent) ~{5+}\r\nab\0cd\r\n\
a APPEND INBOX UTF8 (~{3+}\r\nabc)\r\n\
a IDLE\r\n\
a CHECK\r\n\
A341 CLOSE\r\n\
a UNSELECT\r\n\
A202 EXPUNGE\r\n\
A202 UID EXPUNGE 3000:3002\r\n\
A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n\
A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n\
A284 SEARCH TEXT \"string not in mailbox\"\r\n\
A285 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX\r\n\
A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n\
A284 UID SEARCH UID $ SMALLER 4096\r\n\
8 UID SEARCH HEADER X-TUID abcdefgh\r\n\
a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n\
a SEARCH OR (UNSEEN FLAGGED) KEYWORD $Junk 1:5,7 OLDER 3600 YOUNGER 60\r\n\
A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n\
A283 UID SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n\
A284 SORT RETURN (COUNT) (ARRIVAL) US-ASCII TEXT \"not in mailbox\"\r\n\
ABCD4 FETCH 1 (RFC822)\r\n\
A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n\
A999 UID FETCH 4827313:4828442 FLAGS\r\n\
a0006 FETCH 1:5 ALL\r\n\
a FETCH 1 FAST\r\n\
a FETCH 1 FULL\r\n\
A283 FETCH $ (UID INTERNALDATE FLAGS RFC822.SIZE)\r\n\
9 UID fetch 4 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n\
s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n\
s101 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n\
a FETCH 1 (BINARY.PEEK[1.2]<0.1024> BINARY.SIZE[1] BODY[1.2.MIME] BODY[TEXT]<10.20> BODY[] BODYSTRUCTURE BODY ENVELOPE MODSEQ RFC822.HEADER RFC822.TEXT)\r\n\
a FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (Received)]\r\n\
A003 STORE 2:4 +FLAGS (\\Deleted)\r\n\
a0008 UID STORE 3 +FLAGS.SILENT (\\Deleted)\r\n\
7 UID STORE 5 +FLAGS.SILENT \\Seen $Forwarded\r\n\
a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n\
a STORE 1 FLAGS ()\r\n\
a STORE 1 -FLAGS (\\Flagged)\r\n\
A300 COPY 2:4 MEETING\r\n\
a UID COPY 1:* \"Archive\"\r\n\
a MOVE 1:3 Archive\r\n\
a UID MOVE 5 \"Trash\"\r\n\
G0001 GETQUOTA \"!partition/sda4\"\r\n\
G0002 GETQUOTAROOT INBOX\r\n\
S0000 SETQUOTA \"#user/alice\" (STORAGE 510)\r\n\
a0011 LOGOUT\r\n\
a NOOP\r\n";
    let cmds = commands(transcript.as_bytes());
    let literals = transcript.matches("}\r\n").count();
    assert_eq!(cmds.len(), transcript.matches("\r\n").count() - literals);
    let names: std::collections::BTreeSet<&str> = cmds.iter().map(|c| c.body.name()).collect();
    assert_eq!(names.len(), 34, "{names:?}");
}

#[test]
fn login_and_authenticate() {
    assert_eq!(
        one("a1 LOGIN {4}\r\nuser \"pa\\\"ss\"\r\n"),
        CommandBody::Login {
            user: b("user"),
            password: b("pa\"ss")
        }
    );
    assert_eq!(
        one("2 authenticate plain AGpvZQBzZWNyZXQ=\r\n"),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b("AGpvZQBzZWNyZXQ="))
        }
    );
    assert_eq!(
        one("a AUTHENTICATE PLAIN =\r\n"),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(vec![])
        }
    );
}

#[test]
fn select_with_qresync() {
    let body = one(
        "B01 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:15,100:199 15:29,150:300)))\r\n",
    );
    assert_eq!(
        body,
        CommandBody::Select {
            mailbox: b("INBOX"),
            read_only: false,
            condstore: false,
            qresync: Some(QResync {
                uid_validity: 67890007,
                modseq: 90060115194045000,
                known_uids: Some(ranges(&[(41, 211), (214, 541)])),
                seq_match: Some((
                    ranges(&[(1, 15), (100, 199)]),
                    ranges(&[(15, 29), (150, 300)])
                )),
            }),
        }
    );
}

#[test]
fn list_extended() {
    let body = one(
        "A01 LIST (SUBSCRIBED) \"\" (\"INBOX\" %) RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n",
    );
    assert_eq!(
        body,
        CommandBody::List(ListCommand {
            selection: vec![ListSelect::Subscribed],
            reference: vec![],
            patterns: vec![b("INBOX"), b("%")],
            returns: vec![
                ListReturn::Children,
                ListReturn::Status(vec![StatusItem::Messages, StatusItem::Size])
            ],
        })
    );
    assert_eq!(
        one("t1 CREATE \"Important Messages\" (USE (\\Important))\r\n"),
        CommandBody::Create {
            mailbox: b("Important Messages"),
            special_use: vec!["\\Important".into()]
        }
    );
}

#[test]
fn append_forms() {
    let date = DateTime {
        date: Date {
            year: 1994,
            month: 2,
            day: 7,
        },
        hour: 21,
        minute: 52,
        second: 25,
        zone_minutes: -480,
    };
    assert_eq!(
        one("A003 APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {5}\r\nhello\r\n"),
        CommandBody::Append(Append {
            mailbox: b("saved-messages"),
            flags: vec![b("\\Seen")],
            date: Some(date),
            message: b("hello"),
            binary: false,
            utf8: false,
        })
    );
    let CommandBody::Append(a) = one("a APPEND INBOX UTF8 (~{3+}\r\na\0c)\r\n") else {
        panic!()
    };
    assert_eq!(
        (a.message, a.binary, a.utf8),
        (b"a\0c".to_vec(), true, true)
    );
}

#[test]
fn search_keys_and_returns() {
    let CommandBody::Search(s) = one(
        "A282 UID SEARCH RETURN (MIN COUNT SAVE) CHARSET utf-8 FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
    ) else {
        panic!()
    };
    assert!(s.uid);
    assert_eq!(
        s.returns,
        Some(vec![
            SearchReturn::Min,
            SearchReturn::Count,
            SearchReturn::Save
        ])
    );
    assert_eq!(s.charset.as_deref(), Some("UTF-8"));
    assert_eq!(
        s.key,
        SearchKey::And(vec![
            SearchKey::Flagged,
            SearchKey::Since(Date {
                year: 1994,
                month: 2,
                day: 1
            }),
            SearchKey::Not(Box::new(SearchKey::From(b("Smith")))),
        ])
    );
    let CommandBody::Search(s) = one("a SEARCH OR (SEEN 2:*) $ UID $\r\n") else {
        panic!()
    };
    assert_eq!(
        s.key,
        SearchKey::And(vec![
            SearchKey::Or(
                Box::new(SearchKey::And(vec![
                    SearchKey::Seen,
                    SearchKey::Sequence(SequenceSet::Ranges(vec![(
                        SeqNumber::Value(2),
                        SeqNumber::Largest
                    )]))
                ])),
                Box::new(SearchKey::Sequence(SequenceSet::Saved))
            ),
            SearchKey::Uid(SequenceSet::Saved),
        ])
    );
    let CommandBody::Sort { search, criteria } =
        one("A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n")
    else {
        panic!()
    };
    assert_eq!(search.key, SearchKey::All);
    assert_eq!(
        criteria[1],
        SortCriterion {
            reverse: true,
            key: SortKey::Date
        }
    );
}

#[test]
fn fetch_items() {
    let CommandBody::Fetch {
        items,
        changed_since,
        vanished,
        uid,
        ..
    } = one(
        "a UID FETCH 1:* (BODY.PEEK[1.2.HEADER.FIELDS.NOT (Received \"X y\")]<5.10> BINARY[2]) (CHANGEDSINCE 7 VANISHED)\r\n",
    )
    else {
        panic!()
    };
    assert!(uid && vanished);
    assert_eq!(changed_since, Some(7));
    assert_eq!(
        items,
        vec![
            FetchItem::Section {
                peek: true,
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::HeaderFields {
                        not: true,
                        fields: vec![b("Received"), b("X y")]
                    }),
                },
                partial: Some((5, 10)),
            },
            FetchItem::Binary {
                peek: false,
                part: vec![2],
                partial: None
            },
        ]
    );
    let CommandBody::Fetch { items, .. } = one("a FETCH 1 ALL\r\n") else {
        panic!()
    };
    assert_eq!(
        items,
        [
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope
        ]
    );
    let CommandBody::Fetch { items, .. } = one("a FETCH 1 (BODY[] BODY[1])\r\n") else {
        panic!()
    };
    assert_eq!(
        items[1],
        FetchItem::Section {
            peek: false,
            section: Section {
                part: vec![1],
                text: None
            },
            partial: None
        }
    );
}

#[test]
fn store_with_unchangedsince() {
    assert_eq!(
        one("a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n"),
        CommandBody::Store {
            uid: true,
            set: ranges(&[(6, 6), (4, 4), (8, 8)]),
            unchanged_since: Some(12121230045),
            mode: StoreMode::Add,
            silent: true,
            flags: vec![b("\\Deleted")],
        }
    );
}

#[test]
fn synchronizing_literal_gets_one_continuation_each() {
    let events = trickle(
        b"a LOGIN {1}\r\nu {2}\r\npw\r\nb NOOP\r\n",
        &Limits::default(),
    );
    assert!(matches!(
        events.as_slice(),
        [
            Event::Continue,
            Event::Continue,
            Event::Command(Ok(_)),
            Event::Command(Ok(_))
        ]
    ));
    // LITERAL+: none.
    let events = trickle(b"a LOGIN {1+}\r\nu {2+}\r\npw\r\n", &Limits::default());
    assert!(matches!(events.as_slice(), [Event::Command(Ok(_))]));
}

#[test]
fn errors_answer_with_the_tag_when_known() {
    let e = error(b"a FOO\r\n");
    assert_eq!(
        (e.tag.as_deref(), e.kind),
        (Some(&b"a"[..]), ErrorKind::UnknownCommand)
    );
    let e = error(b"a UID FOO 1\r\n");
    assert_eq!(e.kind, ErrorKind::UnknownCommand);
    let e = error(b"a SELECT\r\n");
    assert_eq!(
        (e.tag.as_deref(), e.kind),
        (Some(&b"a"[..]), ErrorKind::Syntax("Expected a space"))
    );
    assert_eq!(
        error(b"a NOOP extra\r\n").kind,
        ErrorKind::Syntax("Unexpected arguments")
    );
    assert_eq!(
        error(b"a FETCH 0 FLAGS\r\n").kind,
        ErrorKind::Syntax("Expected a non-zero number")
    );
    assert_eq!(
        error(b"a FETCH 99999999999 FLAGS\r\n").kind,
        ErrorKind::NumberTooLarge
    );
    assert_eq!(
        error(b"a LOGIN \"unterminated\r\n").kind,
        ErrorKind::Syntax("Unterminated quoted string")
    );
    let e = error(b"FOO\r\n");
    assert_eq!((e.tag, e.kind), (None, ErrorKind::MissingTag));
    assert_eq!(error(b"\r\n").kind, ErrorKind::Empty);
    assert_eq!(error(b"+tag NOOP\r\n").kind, ErrorKind::MissingTag);
    let mut out = Vec::new();
    error(b"a FOO\r\n").encode(&mut out);
    assert_eq!(out, b"a BAD Unknown command\r\n");
    out.clear();
    error(b"FOO\r\n").encode(&mut out);
    assert_eq!(out, b"* BAD Missing or invalid tag\r\n");
}

#[test]
fn eight_bit_and_nul() {
    assert_eq!(error(b"a SELECT \xc3\xa9\r\n").kind, ErrorKind::EightBit);
    let e = error(b"\xff NOOP\r\n");
    assert_eq!((e.tag, e.kind), (None, ErrorKind::EightBit));
    assert_eq!(error(b"a LOGIN \"a\0b\" c\r\n").kind, ErrorKind::Nul);
    assert_eq!(error(b"a LOGIN {3+}\r\na\0b c\r\n").kind, ErrorKind::Nul);
    assert_eq!(error(b"a NOOP\0\r\n").kind, ErrorKind::Nul);
    // 8-bit inside a quoted string is UTF-8 (RFC 9051 QUOTED-CHAR), not an error.
    assert_eq!(one("a SELECT \"Entwürfe\"\r\n").name(), "SELECT");
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("a SEARCH {}ALL{}\r\n", "(".repeat(100), ")".repeat(100));
    assert_eq!(error(deep.as_bytes()).kind, ErrorKind::TooDeep);
    let nots = format!("a SEARCH {}ALL\r\n", "NOT ".repeat(100_000));
    let cmd = parse_command(nots.as_bytes(), &ParseLimits::default());
    assert_eq!(cmd.unwrap_err().kind, ErrorKind::TooDeep);
    let ok = format!("a SEARCH {}ALL{}\r\n", "(".repeat(20), ")".repeat(20));
    assert_eq!(one(&ok).name(), "SEARCH");
    let deep_list = format!("a STORE 1 FLAGS {}\r\n", "(".repeat(50));
    assert_eq!(
        error(deep_list.as_bytes()).kind,
        ErrorKind::Syntax("Expected an atom")
    );
}

#[test]
fn over_long_line_is_refused_and_the_next_command_served() {
    let limits = Limits {
        max_line: 100,
        ..Limits::default()
    };
    let input = format!("a1 SEARCH TEXT {}\r\na2 NOOP\r\n", "x".repeat(500));
    let events = trickle(input.as_bytes(), &limits);
    let [Event::Refused(r), Event::Command(Ok(c))] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (r.tag.as_deref(), r.reason, r.close),
        (Some(&b"a1"[..]), RefuseReason::LineTooLong, false)
    );
    assert_eq!(c.tag, b"a2");
    // An over-long line that ends in a non-synchronizing literal: the octets that follow
    // cannot be skipped safely.
    let input = format!("a1 LOGIN {} {{5+}}\r\nhello\r\n", "x".repeat(500));
    let events = trickle(input.as_bytes(), &limits);
    assert!(matches!(events.as_slice(), [Event::Refused(r)] if r.close));
}

#[test]
fn literal_limits() {
    let limits = Limits {
        max_literal: 10,
        max_command: 100,
        ..Limits::default()
    };
    // Synchronizing: refused before the continuation, the client never sends it.
    let events = trickle(b"a APPEND INBOX {11}\r\nb NOOP\r\n", &limits);
    let [Event::Refused(r), Event::Command(Ok(_))] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!((r.reason, r.close), (RefuseReason::LiteralTooBig, false));
    let mut out = Vec::new();
    r.encode(&mut out);
    assert_eq!(out, b"a NO [TOOBIG] Literal too large\r\n");
    // Non-synchronizing: already on its way, so answer and close.
    let events = trickle(b"a APPEND INBOX {11+}\r\n0123456789a\r\n", &limits);
    let [Event::Refused(r)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert!(r.close);
    out.clear();
    r.encode(&mut out);
    assert_eq!(
        out,
        b"a BAD [TOOBIG] Literal too large\r\n* BYE [TOOBIG] Closing: literal data cannot be skipped\r\n"
    );
    // Literals that fit one by one but not together.
    let events = trickle(
        b"a LOGIN {10}\r\n0123456789 {10}\r\n",
        &Limits {
            max_command: 30,
            ..limits
        },
    );
    assert!(
        matches!(events.as_slice(), [Event::Continue, Event::Refused(r)] if r.reason == RefuseReason::LiteralTooBig)
    );
    // A length that does not fit in 64 bits.
    let events = trickle(b"a LOGIN {99999999999999999999999}\r\n", &limits);
    assert!(matches!(events.as_slice(), [Event::Refused(r)] if !r.close));
}

#[test]
fn literal_minus() {
    let limits = Limits {
        non_sync: NonSync::Minus,
        ..Limits::default()
    };
    let small = format!("a APPEND INBOX {{4096+}}\r\n{}\r\n", "x".repeat(4096));
    assert!(matches!(
        trickle(small.as_bytes(), &limits).as_slice(),
        [Event::Command(Ok(_))]
    ));
    let events = trickle(b"a APPEND INBOX {4097+}\r\n", &limits);
    assert!(
        matches!(events.as_slice(), [Event::Refused(r)] if r.close && r.reason == RefuseReason::NonSyncTooBig)
    );
    // A synchronizing literal of the same size is fine.
    let events = trickle(b"a APPEND INBOX {4097}\r\n", &limits);
    assert_eq!(events, [Event::Continue]);
}

#[test]
fn unterminated_literal_waits() {
    let (events, left) = drive([&b"a LOGIN {5}\r\nab"[..]], &Limits::default());
    assert_eq!(events, [Event::Continue]);
    assert_eq!(left, 15);
}

#[test]
fn bare_lf_is_accepted() {
    assert_eq!(one("a NOOP\n"), CommandBody::Noop);
    assert_eq!(
        one("a LOGIN {1}\nu p\n"),
        CommandBody::Login {
            user: b("u"),
            password: b("p")
        }
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_command(&input, &ParseLimits::default());
            let _ = drive(input.chunks(7), &Limits { max_line: 64, max_literal: 50, max_command: 200, non_sync: NonSync::Minus });
        }

        #[test]
        fn near_valid_input_never_panics(
            cmd in prop::sample::select(vec![
                "a SEARCH ", "a FETCH 1 ", "a STORE 1 ", "a LIST ", "a SELECT x ", "a APPEND x ",
                "a UID FETCH 1:* ", "a ID ", "a SORT ", "a STATUS x ",
            ]),
            tail in "[ ()\\[\\]<>.:*$0-9A-Z\"{}+~\\\\-]{0,40}",
        ) {
            let input = format!("{cmd}{tail}\r\n");
            let _ = parse_command(input.as_bytes(), &ParseLimits::default());
        }
    }
}
