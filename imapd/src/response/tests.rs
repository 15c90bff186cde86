//! Golden bytes for every kind of response, and the FETCH encodings (ENVELOPE,
//! BODYSTRUCTURE, sections, literal8), checked against RFC 9051's examples.

use super::*;
use crate::command::{Section, SectionText, StatusItem};

fn enc(r: Response) -> String {
    String::from_utf8(r.to_bytes(Encoding::default())).unwrap()
}

fn data(d: Data) -> String {
    enc(Response::Data(d))
}

#[test]
fn status_responses_and_codes() {
    let tagged = |status, code, text| {
        enc(Response::Tagged {
            tag: b"A1",
            status,
            code,
            text,
        })
    };
    assert_eq!(
        tagged(Status::Ok, None, "LOGIN completed"),
        "A1 OK LOGIN completed\r\n"
    );
    assert_eq!(
        tagged(Status::No, Some(Code::TryCreate), "no such mailbox"),
        "A1 NO [TRYCREATE] no such mailbox\r\n"
    );
    assert_eq!(tagged(Status::Bad, None, ""), "A1 BAD done\r\n");
    assert_eq!(tagged(Status::Ok, None, "a\r\nb"), "A1 OK a  b\r\n");
    let codes: Vec<(Code, &str)> = vec![
        (Code::Alert, "ALERT"),
        (
            Code::BadCharset(&["UTF-8", "US-ASCII"]),
            "BADCHARSET (UTF-8 US-ASCII)",
        ),
        (Code::BadCharset(&[]), "BADCHARSET"),
        (
            Code::Capability(&["IMAP4rev1", "IMAP4rev2"]),
            "CAPABILITY IMAP4rev1 IMAP4rev2",
        ),
        (Code::Parse, "PARSE"),
        (
            Code::PermanentFlags(&[b"\\Seen", b"\\*"]),
            "PERMANENTFLAGS (\\Seen \\*)",
        ),
        (Code::ReadOnly, "READ-ONLY"),
        (Code::ReadWrite, "READ-WRITE"),
        (Code::UidNext(4392), "UIDNEXT 4392"),
        (Code::UidValidity(3857529045), "UIDVALIDITY 3857529045"),
        (Code::Unseen(12), "UNSEEN 12"),
        (
            Code::AppendUid {
                uid_validity: 38505,
                uids: &[(3955, 3955)],
            },
            "APPENDUID 38505 3955",
        ),
        (
            Code::CopyUid {
                uid_validity: 38505,
                source: &[(304, 304), (319, 320)],
                destination: &[(3956, 3958)],
            },
            "COPYUID 38505 304,319:320 3956:3958",
        ),
        (Code::UidNotSticky, "UIDNOTSTICKY"),
        (
            Code::HighestModSeq(715194045007),
            "HIGHESTMODSEQ 715194045007",
        ),
        (Code::NoModSeq, "NOMODSEQ"),
        (Code::Modified(&[(7, 7), (9, 9)]), "MODIFIED 7,9"),
        (Code::Closed, "CLOSED"),
        (Code::TooBig, "TOOBIG"),
        (Code::AuthenticationFailed, "AUTHENTICATIONFAILED"),
        (Code::Unavailable, "UNAVAILABLE"),
        (Code::AlreadyExists, "ALREADYEXISTS"),
        (Code::NonExistent, "NONEXISTENT"),
        (Code::InUse, "INUSE"),
        (Code::Limit, "LIMIT"),
        (Code::OverQuota, "OVERQUOTA"),
        (Code::Cannot, "CANNOT"),
        (Code::ServerBug, "SERVERBUG"),
        (Code::ContactAdmin, "CONTACTADMIN"),
        (Code::NoPerm, "NOPERM"),
        (Code::ExpungeIssued, "EXPUNGEISSUED"),
        (Code::PrivacyRequired, "PRIVACYREQUIRED"),
        (Code::UseAttr, "USEATTR"),
        (Code::NotSaved, "NOTSAVED"),
        (Code::UnknownCte, "UNKNOWN-CTE"),
        (Code::Other("XFOO"), "XFOO"),
    ];
    for (code, text) in codes {
        assert_eq!(
            enc(Response::Untagged {
                status: Untagged::Ok,
                code: Some(code),
                text: "t"
            }),
            format!("* OK [{text}] t\r\n")
        );
    }
    let bye = Response::Untagged {
        status: Untagged::Bye,
        code: None,
        text: "Logging out",
    };
    assert_eq!(enc(bye), "* BYE Logging out\r\n");
    let pre = Response::Untagged {
        status: Untagged::PreAuth,
        code: None,
        text: "hi",
    };
    assert_eq!(enc(pre), "* PREAUTH hi\r\n");
    assert_eq!(enc(Response::Continue("OK")), "+ OK\r\n");
    assert_eq!(enc(Response::Challenge(b"")), "+ \r\n");
    assert_eq!(enc(Response::Challenge(b"YQ==")), "+ YQ==\r\n");
}

#[test]
fn untagged_data() {
    assert_eq!(
        data(Data::Capability(&["IMAP4rev1", "IMAP4rev2", "AUTH=PLAIN"])),
        "* CAPABILITY IMAP4rev1 IMAP4rev2 AUTH=PLAIN\r\n"
    );
    assert_eq!(
        data(Data::List {
            lsub: false,
            attributes: &["\\HasNoChildren", "\\Sent"],
            delimiter: Some(b'/'),
            mailbox: b"Sent Items",
            extended: &[],
        }),
        "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"
    );
    assert_eq!(
        data(Data::List {
            lsub: true,
            attributes: &[],
            delimiter: Some(b'\\'),
            mailbox: b"INBOX",
            extended: &[],
        }),
        "* LSUB () \"\\\\\" INBOX\r\n"
    );
    assert_eq!(
        data(Data::List {
            lsub: false,
            attributes: &["\\NonExistent"],
            delimiter: None,
            mailbox: b"Foo",
            extended: &[
                ListExtended::ChildInfo(&["SUBSCRIBED"]),
                ListExtended::OldName(b"Bar")
            ],
        }),
        "* LIST (\\NonExistent) NIL Foo (\"CHILDINFO\" (\"SUBSCRIBED\") \"OLDNAME\" (Bar))\r\n"
    );
    assert_eq!(
        data(Data::Status {
            mailbox: b"blurdybloop",
            items: &[
                (StatusItem::Messages, 231),
                (StatusItem::UidNext, 44292),
                (StatusItem::Size, 1 << 40)
            ],
        }),
        "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 SIZE 1099511627776)\r\n"
    );
    assert_eq!(
        data(Data::Flags(&[b"\\Answered", b"\\Seen", b"$Forwarded"])),
        "* FLAGS (\\Answered \\Seen $Forwarded)\r\n"
    );
    assert_eq!(data(Data::Exists(23)), "* 23 EXISTS\r\n");
    assert_eq!(data(Data::Recent(0)), "* 0 RECENT\r\n");
    assert_eq!(data(Data::Expunge(44)), "* 44 EXPUNGE\r\n");
    assert_eq!(
        data(Data::Vanished {
            earlier: true,
            uids: &[(300, 310), (405, 405)]
        }),
        "* VANISHED (EARLIER) 300:310,405\r\n"
    );
    assert_eq!(
        data(Data::Vanished {
            earlier: false,
            uids: &[(1, 1)]
        }),
        "* VANISHED 1\r\n"
    );
    assert_eq!(
        data(Data::Search {
            ids: &[2, 84, 882],
            modseq: None
        }),
        "* SEARCH 2 84 882\r\n"
    );
    assert_eq!(
        data(Data::Search {
            ids: &[],
            modseq: None
        }),
        "* SEARCH\r\n"
    );
    assert_eq!(
        data(Data::Search {
            ids: &[2, 5],
            modseq: Some(917162500)
        }),
        "* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    );
    assert_eq!(
        data(Data::Sort {
            ids: &[5, 3],
            modseq: None
        }),
        "* SORT 5 3\r\n"
    );
    assert_eq!(
        data(Data::ESearch(ESearch {
            tag: Some(b"A282"),
            min: Some(2),
            count: Some(3),
            ..Default::default()
        })),
        "* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n"
    );
    assert_eq!(
        data(Data::ESearch(ESearch {
            tag: Some(b"A283"),
            uid: true,
            all: Some(&[(2, 2), (10, 15), (21, 21)]),
            modseq: Some(7),
            ..Default::default()
        })),
        "* ESEARCH (TAG \"A283\") UID ALL 2,10:15,21 MODSEQ 7\r\n"
    );
    assert_eq!(
        data(Data::ESearch(ESearch {
            tag: Some(b"t"),
            ..Default::default()
        })),
        "* ESEARCH (TAG \"t\")\r\n"
    );
    assert_eq!(
        data(Data::Enabled(&["CONDSTORE"])),
        "* ENABLED CONDSTORE\r\n"
    );
    assert_eq!(data(Data::Enabled(&[])), "* ENABLED\r\n");
    assert_eq!(
        data(Data::Id(Some(&[
            ("name", Some(b"Postern")),
            ("support-url", None)
        ]))),
        "* ID (\"name\" \"Postern\" \"support-url\" NIL)\r\n"
    );
    assert_eq!(data(Data::Id(None)), "* ID NIL\r\n");
    let personal = [NamespaceDesc {
        prefix: b"",
        delimiter: Some(b'/'),
    }];
    assert_eq!(
        data(Data::Namespace {
            personal: &personal,
            other: &[],
            shared: &[]
        }),
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
    );
    assert_eq!(
        data(Data::Quota {
            root: b"",
            resources: &[("STORAGE", 10, 512)]
        }),
        "* QUOTA \"\" (STORAGE 10 512)\r\n"
    );
    assert_eq!(
        data(Data::QuotaRoot {
            mailbox: b"INBOX",
            roots: &[b""]
        }),
        "* QUOTAROOT INBOX \"\"\r\n"
    );
}

fn fetch(attrs: &[FetchAttr], e: Encoding) -> Vec<u8> {
    Response::Data(Data::Fetch { seq: 12, attrs }).to_bytes(e)
}

#[test]
fn fetch_simple_items_and_sections() {
    let section = Section {
        part: vec![],
        text: Some(SectionText::HeaderFields {
            not: false,
            fields: vec![b"DATE".to_vec(), b"FROM".to_vec()],
        }),
    };
    let text = Section {
        part: vec![1, 2],
        text: Some(SectionText::Mime),
    };
    let attrs = [
        FetchAttr::Uid(4827313),
        FetchAttr::Flags {
            system: SystemFlags(SystemFlags::SEEN | SystemFlags::DELETED),
            keywords: &[b"$Junk"],
        },
        FetchAttr::InternalDate {
            unix: 761_524_345,
            zone_minutes: -420,
        },
        FetchAttr::Rfc822Size(44827),
        FetchAttr::ModSeq(624140003),
        FetchAttr::Section {
            section: &section,
            origin: None,
            data: Some(b"Date: x\r\n\r\n"),
        },
        FetchAttr::Section {
            section: &text,
            origin: Some(0),
            data: None,
        },
        FetchAttr::Binary {
            part: &[1],
            origin: None,
            data: Some(b"a\0b"),
        },
        FetchAttr::Binary {
            part: &[],
            origin: Some(5),
            data: Some(b"ab"),
        },
        FetchAttr::BinarySize {
            part: &[2, 1],
            size: 77,
        },
        FetchAttr::Rfc822Header(Some(b"")),
        FetchAttr::Rfc822(None),
    ];
    assert_eq!(
        String::from_utf8(fetch(&attrs, Encoding::default())).unwrap(),
        "* 12 FETCH (UID 4827313 FLAGS (\\Seen \\Deleted $Junk) \
         INTERNALDATE \"17-Feb-1994 15:32:25 -0700\" RFC822.SIZE 44827 MODSEQ (624140003) \
         BODY[HEADER.FIELDS (DATE FROM)] {11}\r\nDate: x\r\n\r\n BODY[1.2.MIME]<0> NIL \
         BINARY[1] ~{3}\r\na\0b BINARY[]<5> {2}\r\nab BINARY.SIZE[2.1] 77 \
         RFC822.HEADER {0}\r\n RFC822 NIL)\r\n"
    );
    let mut out = Vec::new();
    fetch::internal_date(&mut out, 0, 0);
    fetch::internal_date(&mut out, 951_782_400, 330);
    assert_eq!(
        out,
        b"\" 1-Jan-1970 00:00:00 +0000\"\"29-Feb-2000 05:30:00 +0530\""
    );
    let flags = fetch(
        &[FetchAttr::Flags {
            system: SystemFlags::default(),
            keywords: &[],
        }],
        Encoding::default(),
    );
    assert_eq!(flags, b"* 12 FETCH (FLAGS ())\r\n");
}

fn sample_envelope() -> Envelope<'static> {
    Envelope {
        date: Some(b"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)"),
        subject: Some(b"IMAP4rev2 WG mtg summary and minutes"),
        from: vec![Address {
            name: Some(b"Terry Gray"),
            adl: None,
            mailbox: Some(b"gray"),
            host: Some(b"cac.washington.edu"),
        }],
        to: vec![Address {
            name: None,
            adl: None,
            mailbox: Some(b"imap"),
            host: Some(b"cac.washington.edu"),
        }],
        cc: vec![
            Address {
                name: None,
                adl: None,
                mailbox: Some(b"minutes"),
                host: Some(b"CNRI.Reston.VA.US"),
            },
            Address {
                name: Some(b"John Klensin"),
                adl: None,
                mailbox: Some(b"KLENSIN"),
                host: Some(b"MIT.EDU"),
            },
        ],
        message_id: Some(b"<B27397-0100000@cac.washington.edu>"),
        ..Default::default()
    }
}

#[test]
fn envelope_as_in_rfc_9051() {
    let env = sample_envelope();
    let out = String::from_utf8(fetch(&[FetchAttr::Envelope(&env)], Encoding::default())).unwrap();
    assert_eq!(
        out,
        "* 12 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \
         \"IMAP4rev2 WG mtg summary and minutes\" \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) NIL NIL \
         ((NIL NIL \"imap\" \"cac.washington.edu\")) \
         ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) \
         NIL NIL \"<B27397-0100000@cac.washington.edu>\"))\r\n"
    );
    // 8-bit in a header: a literal, unless the client accepts UTF-8.
    let env = Envelope {
        subject: Some("Grüße".as_bytes()),
        ..Default::default()
    };
    let plain = fetch(&[FetchAttr::Envelope(&env)], Encoding::default());
    assert!(plain.windows(5).any(|w| w == b"{7}\r\n"));
    let utf8 = fetch(&[FetchAttr::Envelope(&env)], Encoding { utf8: true });
    assert!(
        String::from_utf8(utf8)
            .unwrap()
            .contains("NIL \"Grüße\" NIL")
    );
}

fn text_part(subtype: &'static [u8], size: u64, lines: u64) -> BodyStructure<'static> {
    BodyStructure::Single {
        fields: BodyFields {
            media_type: b"TEXT",
            subtype,
            params: vec![(b"CHARSET", b"US-ASCII")],
            encoding: b"7BIT",
            size,
            ..Default::default()
        },
        kind: SingleKind::Text { lines },
        md5: None,
        ext: BodyExt::default(),
    }
}

#[test]
fn body_structures() {
    let multi = BodyStructure::Multi {
        parts: vec![text_part(b"PLAIN", 1152, 23), text_part(b"HTML", 4554, 73)],
        subtype: b"ALTERNATIVE",
        ext: MultiExt {
            params: vec![(b"BOUNDARY", b"xyz")],
            ext: BodyExt {
                disposition: Some(Disposition {
                    kind: b"inline",
                    params: vec![],
                }),
                language: vec![b"en", b"de"],
                location: None,
            },
        },
    };
    let body = String::from_utf8(fetch(&[FetchAttr::Body(&multi)], Encoding::default())).unwrap();
    assert_eq!(
        body,
        "* 12 FETCH (BODY ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)\
         (\"TEXT\" \"HTML\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4554 73) \"ALTERNATIVE\"))\r\n"
    );
    let full = String::from_utf8(fetch(
        &[FetchAttr::BodyStructure(&multi)],
        Encoding::default(),
    ))
    .unwrap();
    assert_eq!(
        full,
        "* 12 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23 NIL NIL NIL NIL)\
         (\"TEXT\" \"HTML\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4554 73 NIL NIL NIL NIL) \"ALTERNATIVE\" \
         (\"BOUNDARY\" \"xyz\") (\"inline\" NIL) (\"en\" \"de\") NIL))\r\n"
    );
    let message = BodyStructure::Single {
        fields: BodyFields {
            media_type: b"MESSAGE",
            subtype: b"RFC822",
            encoding: b"7BIT",
            size: 900,
            ..Default::default()
        },
        kind: SingleKind::Message {
            envelope: Box::new(Envelope::default()),
            body: Box::new(text_part(b"PLAIN", 10, 1)),
            lines: 20,
        },
        md5: Some(b"abc"),
        ext: BodyExt {
            language: vec![b"en"],
            location: Some(b"loc"),
            ..Default::default()
        },
    };
    let out = String::from_utf8(fetch(
        &[FetchAttr::BodyStructure(&message)],
        Encoding::default(),
    ))
    .unwrap();
    assert_eq!(
        out,
        "* 12 FETCH (BODYSTRUCTURE (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 900 \
         (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) \
         (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL) 20 \
         \"abc\" NIL \"en\" \"loc\"))\r\n"
    );
}
