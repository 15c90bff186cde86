//! Tests of the header texts: SEARCH answered from the stored texts (what the cache keeps)
//! and from a header must both agree with matching on the whole header parsed by
//! `mail-parser`, which is how SEARCH matched before the cache; on encoded words, address
//! lists, groups, folding, missing and repeated fields, 8-bit text and bare LF files.

use mail_parser::{HeaderValue, MessageParser};
use proptest::prelude::*;

use super::*;
use crate::session::message::header_end;

/// SEARCH's header match before the cache: the file's header (cut at the first CRLF CRLF)
/// parsed whole, every field of the name, its raw value or its decoded one.
fn reference(file: &[u8], name: &[u8], needle: &[u8]) -> bool {
    let lower = |s: &[u8]| String::from_utf8_lossy(s).to_lowercase();
    let header = &file[..header_end(file)];
    let needle = lower(needle);
    let Some(msg) = MessageParser::default().parse_headers(header) else {
        return false;
    };
    let name = String::from_utf8_lossy(name);
    msg.headers()
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(&name))
        .any(|h| {
            let raw_value = header
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            needle.is_empty()
                || lower(raw_value).contains(&needle)
                || reference_decoded(&h.value).contains(&needle)
        })
}

fn reference_decoded(v: &HeaderValue) -> String {
    let mut s = String::new();
    match v {
        HeaderValue::Text(t) => s.push_str(t),
        HeaderValue::TextList(l) => l.iter().for_each(|t| {
            s.push_str(t);
            s.push(' ')
        }),
        HeaderValue::Address(a) => a.iter().for_each(|a| {
            s.push_str(a.name.as_deref().unwrap_or_default());
            s.push(' ');
            s.push_str(a.address.as_deref().unwrap_or_default());
            s.push(' ');
        }),
        _ => {}
    }
    s.to_lowercase()
}

/// Both new ways: the stored texts for the cached fields, the texts of the header for any.
fn new_ways(file: &[u8], name: &[u8], needle: &[u8]) -> (Option<bool>, bool) {
    let header = &file[..header_len(file)];
    let n = Needle::new(needle);
    let stored = cached_index(name).map(|i| n.in_stored(&encode(header), i));
    (stored, n.in_texts(&texts(header, &[name])))
}

fn check(file: &[u8], name: &[u8], needle: &[u8]) -> bool {
    let want = reference(file, name, needle);
    let (stored, parsed) = new_ways(file, name, needle);
    let show = || {
        format!(
            "{} / {} / {:?}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(file)
        )
    };
    assert_eq!(parsed, want, "texts: {}", show());
    if let Some(stored) = stored {
        assert_eq!(stored, want, "stored: {}", show());
    }
    want
}

const TRICKY: &[&[u8]] = &[
    b"Subject: =?UTF-8?Q?Caf=C3=A9_Quarterly_review?=\r\nFrom: x@y\r\n\r\nbody\r\n",
    b"To: Alice <a@x.org>, \"Bob, Jr.\" <bob@y.org>,\r\n c@z\r\nSubject: multi\r\n\r\n",
    b"Cc: Team: a@b, \"C D\" <c@d>;, e@f\r\nBcc: undisclosed-recipients:;\r\n\r\nx",
    b"From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\nSubject: =?utf-8?B?w6l0w6k=?= et =?koi8-r?B?8NLJ18XU?=\r\n\r\n",
    b"From: J\xc3\xb6rg M\xc3\xbcller <j@x.de>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\n",
    b"From: Ren\xe9 <r@latin1.example>\r\nSubject: caf\xe9\r\n\r\n",
    b"Subject: folded\r\n  over\r\n\tlines\r\nFrom: a@b (Alice Comment)\r\nFrom: second@from\r\n\r\n",
    b"From: zebrowski <z@corp>\nSubject: LF only\nTo: t@x\n\nFrom: evil@body\nSubject: in the body\n",
    b"Subject: no body at all\r\nFrom: nobody@x",
    b"FROM: upper@case\r\nsubject:tight\r\nX-Foo: bar\r\nReceived: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n",
    b" From: leading@space\r\nFrom  : two@spaces\r\n:Subject: colon\r\nSubject:\r\n\r\n",
    b"Subject: =?bogus?Q?x?= =?utf-8?q?broken\r\nFrom: \"quoted \\\" name\" <q@x>, =?utf-8?q?=C3=A9?= <e@x>\r\n\r\n",
    b"Received: x\r\nnot a field line\r\nFrom: after@garbage\r\n\r\n",
    b"\r\nFrom: in@body\r\n",
    b"",
];

const NEEDLES: &[&[u8]] = &[
    b"",
    b"caf\xc3\xa9",
    b"CAF\xc3\x89",
    b"=?utf-8?q",
    b"quarterly",
    b"bob, jr.",
    b"bob@y",
    b"alice a@x",
    b", c@z",
    b"team",
    b"undisclosed",
    b"andr\xc3\xa9",
    b"pirard@vm1",
    b"\xc3\xa9t\xc3\xa9",
    b"J\xc3\x96RG",
    b"gr\xc3\xbc\xc3\x9fe",
    b"ren",
    b"folded over",
    b"folded\r\n",
    b"alice comment",
    b"second",
    b"zebrowski",
    b"evil",
    b"nobody",
    b"upper",
    b"tight",
    b"bar",
    b"two@",
    b"leading",
    b"colon",
    b"quoted \" name",
    b"e@x",
    b"garbage",
    b"in@body",
    b" ",
];

const NAMES: &[&[u8]] = &[
    b"from",
    b"TO",
    b"Cc",
    b"bcc",
    b"subject",
    b"x-foo",
    b"received",
    b"date",
];

#[test]
fn tricky_headers_match_as_before() {
    let mut matched = 0;
    for file in TRICKY {
        for name in NAMES {
            for needle in NEEDLES {
                matched += usize::from(check(file, name, needle));
            }
        }
    }
    assert!(matched > 40, "the cases do match things: {matched}");
    // Spot checks of what RFC 9051 §6.4.4 wants.
    assert!(check(TRICKY[0], b"subject", "CAFÉ quarterly".as_bytes()));
    assert!(check(TRICKY[2], b"bcc", b""));
    assert!(!check(TRICKY[1], b"cc", b""));
    assert!(check(TRICKY[3], b"from", "andré pirard".as_bytes()));
    assert!(check(TRICKY[7], b"from", b"ZEBROWSKI"));
    assert!(!check(TRICKY[7], b"from", b"evil"));
}

#[test]
fn header_len_agrees_with_header_end_after_crlf() {
    use crate::session::message::crlf;
    for file in TRICKY {
        let cut = crlf(file[..header_len(file)].to_vec());
        let whole = crlf(file.to_vec());
        assert_eq!(
            cut,
            &whole[..header_end(&whole)],
            "{:?}",
            String::from_utf8_lossy(file)
        );
    }
}

#[test]
fn stored_texts_are_valid_and_compact() {
    let stored = encode(TRICKY[0]);
    assert!(valid(&stored));
    assert!(!valid(&stored[..stored.len() - 1]));
    // A plain subject's decoded text is part of its raw one: kept once.
    let plain = encode(b"Subject: hello world\r\n\r\n");
    assert_eq!(plain.len(), 5 + " hello world\r\n".len());
}

fn field() -> impl Strategy<Value = Vec<u8>> {
    let names = prop::sample::select(vec![
        "From", "To", "cc", "BCC", "Subject", "X-Foo", "Received", "Date", " From", "To ",
    ]);
    let pieces = prop::collection::vec(
        prop::sample::select(vec![
            "a@b",
            "<c@d>",
            "\"Q, R\"",
            "Name",
            "=?utf-8?q?=C3=A9t=C3=A9?=",
            "=?iso-8859-1?b?6Q==?=",
            "g:",
            ";",
            ",",
            " ",
            "\r\n ",
            "\n\t",
            "(cmt)",
            "\u{e9}",
            "\"",
            "\\",
            "::",
        ]),
        0..8,
    );
    let end = prop::sample::select(vec!["\r\n", "\n"]);
    (names, pieces, end).prop_map(|(n, p, e)| format!("{n}:{}{e}", p.concat()).into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn generated_headers_match_as_before(
        fields in prop::collection::vec(field(), 0..6),
        blank in prop::sample::select(vec!["\r\n", "\n", ""]),
        body in prop::sample::select(vec!["", "From: body@x\n", "text"]),
        cut in (0usize..40, 0usize..6),
    ) {
        let mut file = fields.concat();
        file.extend_from_slice(blank.as_bytes());
        file.extend_from_slice(body.as_bytes());
        // Needles: fixed ones and a piece of the header itself.
        let start = cut.0.min(file.len());
        let end = (start + cut.1).min(file.len());
        let piece = file[start..end].to_vec();
        for name in NAMES {
            for needle in [&b""[..], b"a@b", b"\xc3\xa9t\xc3\xa9", b"q, r", b"name c@d", b"g", &piece] {
                check(&file, name, needle);
            }
        }
    }

    #[test]
    fn header_len_then_crlf_is_header_end_of_crlf(
        data in prop::collection::vec(prop::sample::select(vec![b'a', b':', b'\r', b'\n', b' ']), 0..60),
    ) {
        use crate::session::message::crlf;
        let cut = crlf(data[..header_len(&data)].to_vec());
        let whole = crlf(data.clone());
        prop_assert_eq!(&cut[..], &whole[..header_end(&whole)]);
    }
}
