//! Tests of the SMTP client core: replies fed whole, split at every position and byte by
//! byte; capabilities; the transaction with and without PIPELINING.

use super::*;

/// Every reply in `bytes`, fed in pieces of the given boundaries.
fn replies_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Reply>, ReplyError> {
    let mut parser = ReplyParser::default();
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        parser.feed(&bytes[from..cut]);
        from = cut;
        while let Some(r) = parser.next_reply()? {
            out.push(r);
        }
    }
    Ok(out)
}

const EHLO: &[u8] = b"250-mx.example.test greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-AUTH LOGIN PLAIN\r\n250-DSN\r\n250 STARTTLS\r\n550 5.1.1 no\r\n";

#[test]
fn replies_whole_split_and_byte_by_byte_agree() {
    let whole = replies_in_pieces(EHLO, &[]).unwrap();
    assert_eq!(whole.len(), 2);
    assert_eq!(whole[0].code, 250);
    assert_eq!(whole[0].lines.len(), 7);
    assert_eq!(whole[1], Reply::new(550, "5.1.1 no"));
    for cut in 0..=EHLO.len() {
        assert_eq!(
            replies_in_pieces(EHLO, &[cut]).unwrap(),
            whole,
            "split at {cut}"
        );
    }
    let every: Vec<usize> = (1..EHLO.len()).collect();
    assert_eq!(replies_in_pieces(EHLO, &every).unwrap(), whole);
}

#[test]
fn bad_replies_are_errors() {
    for bad in [
        &b"hello\r\n"[..],
        b"250-a\r\n251 b\r\n",
        b"2500 x\r\n",
        b"099 x\r\n",
    ] {
        assert!(
            matches!(replies_in_pieces(bad, &[]), Err(ReplyError::Malformed(_))),
            "{bad:?}"
        );
    }
    let long = vec![b'2'; MAX_REPLY_LINE + 10];
    assert_eq!(replies_in_pieces(&long, &[]), Err(ReplyError::TooLong));
    let many = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
    assert_eq!(replies_in_pieces(&many, &[]), Err(ReplyError::TooManyLines));
    // A bare code (no text) is a reply.
    assert_eq!(
        replies_in_pieces(b"250\r\n", &[]).unwrap(),
        vec![Reply::new(250, "")]
    );
}

#[test]
fn capabilities_from_ehlo() {
    let reply = replies_in_pieces(EHLO, &[]).unwrap().remove(0);
    let caps = Capabilities::parse(&reply);
    assert_eq!(
        caps,
        Capabilities {
            pipelining: true,
            starttls: true,
            eightbitmime: true,
            smtputf8: false,
            dsn: true,
            size: Some(1000),
            auth_plain: true,
            auth_login: true,
        }
    );
    let bare = Capabilities::parse(&Reply::new(250, "hi"));
    assert_eq!(bare, Capabilities::default());
}

fn envelope() -> Envelope {
    Envelope {
        sender: "a@here.test".into(),
        recipients: vec![
            Rcpt {
                address: "b@there.test".into(),
                local: false,
                notify: vec!["FAILURE".into(), "DELAY".into()],
                orcpt: Some("B+x@there.test".into()),
            },
            Rcpt {
                address: "c@there.test".into(),
                local: false,
                notify: vec![],
                orcpt: None,
            },
        ],
        ret: Some("HDRS".into()),
        envid: Some("id=1".into()),
        body_8bit: true,
        smtputf8: false,
    }
}

#[test]
fn parameters_only_where_offered() {
    let env = envelope();
    let all = Capabilities {
        dsn: true,
        eightbitmime: true,
        size: Some(0),
        ..Capabilities::default()
    };
    assert_eq!(
        mail_command(&all, &env, 42),
        "MAIL FROM:<a@here.test> SIZE=42 BODY=8BITMIME RET=HDRS ENVID=id+3D1\r\n"
    );
    assert_eq!(
        rcpt_command(&all, &env.recipients[0]),
        "RCPT TO:<b@there.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;B+2Bx@there.test\r\n"
    );
    let none = Capabilities::default();
    assert_eq!(mail_command(&none, &env, 42), "MAIL FROM:<a@here.test>\r\n");
    assert_eq!(
        rcpt_command(&none, &env.recipients[0]),
        "RCPT TO:<b@there.test>\r\n"
    );
}

#[test]
fn too_big_or_needing_smtputf8_is_refused_before_mail() {
    let mut env = envelope();
    let caps = Capabilities {
        size: Some(100),
        ..Capabilities::default()
    };
    assert_eq!(
        refuse_before_mail(&caps, &env, 101, false).unwrap().code,
        552
    );
    assert!(refuse_before_mail(&caps, &env, 100, false).is_none());
    env.smtputf8 = true;
    assert_eq!(refuse_before_mail(&caps, &env, 10, true).unwrap().code, 553);
    assert!(
        refuse_before_mail(&caps, &env, 10, false).is_none(),
        "ASCII-only: no need"
    );
}

/// Runs a transaction against scripted replies; returns what was sent and the results.
fn run(pipelining: bool, replies: &[&str]) -> (String, Vec<u16>, bool) {
    let mut tx = Transaction::new(
        "MAIL FROM:<a@x>\r\n".into(),
        vec!["RCPT TO:<b@y>\r\n".into(), "RCPT TO:<c@y>\r\n".into()],
        pipelining,
    );
    let mut sent = String::new();
    let mut step = tx.start();
    let mut replies = replies.iter();
    loop {
        match step {
            Step::Send(bytes) => sent.push_str(&String::from_utf8(bytes).unwrap()),
            Step::SendBody => sent.push_str("<body>"),
            Step::Wait => {}
            Step::Done { results, reset } => {
                assert!(replies.next().is_none(), "every reply consumed");
                return (sent, results.iter().map(|r| r.code).collect(), reset);
            }
        }
        let text = replies.next().expect("the transaction wants another reply");
        let mut parser = ReplyParser::default();
        parser.feed(text.as_bytes());
        step = tx.on_reply(parser.next_reply().unwrap().unwrap());
    }
}

#[test]
fn pipelined_transaction_with_one_refused_recipient() {
    let (sent, codes, reset) = run(
        true,
        &[
            "250 ok\r\n",
            "550 5.1.1 no\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 queued\r\n",
        ],
    );
    assert_eq!(
        sent,
        "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n<body>"
    );
    assert_eq!(codes, vec![550, 250]);
    assert!(!reset);
}

#[test]
fn pipelined_everyone_refused_but_data_accepted_sends_an_empty_message() {
    let (sent, codes, reset) = run(
        true,
        &[
            "250 ok\r\n",
            "550 no\r\n",
            "450 later\r\n",
            "354 go\r\n",
            "554 no valid recipients\r\n",
        ],
    );
    assert!(sent.ends_with("DATA\r\n.\r\n"), "{sent}");
    assert_eq!(codes, vec![550, 450]);
    assert!(reset);
}

#[test]
fn pipelined_sender_refused_refuses_all() {
    let (_, codes, reset) = run(
        true,
        &[
            "553 bad sender\r\n",
            "503 no\r\n",
            "503 no\r\n",
            "503 no\r\n",
        ],
    );
    assert_eq!(codes, vec![553, 553]);
    assert!(reset);
}

#[test]
fn lockstep_transaction() {
    let (sent, codes, _) = run(
        false,
        &[
            "250 ok\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "451 try later\r\n",
        ],
    );
    assert_eq!(
        sent,
        "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n<body>"
    );
    assert_eq!(
        codes,
        vec![451, 451],
        "the final reply applies to every accepted recipient"
    );
    let (sent, codes, reset) = run(false, &["250 ok\r\n", "550 no\r\n", "551 no\r\n"]);
    assert!(!sent.contains("DATA"), "no DATA when nobody was accepted");
    assert_eq!(codes, vec![550, 551]);
    assert!(reset);
    let (_, codes, _) = run(false, &["421 closing\r\n"]);
    assert_eq!(codes, vec![421, 421]);
}

#[test]
fn data_refused() {
    let (_, codes, reset) = run(
        true,
        &["250 ok\r\n", "250 ok\r\n", "550 no\r\n", "452 full\r\n"],
    );
    assert_eq!(codes, vec![452, 550]);
    assert!(reset);
}

/// Encodes replies on the wire: every line but the last with '-'.
fn encode(replies: &[(u16, Vec<String>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (code, lines) in replies {
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
        }
    }
    out
}

proptest::proptest! {
    /// Any sequence of well-formed replies, cut anywhere, parses back to itself.
    #[test]
    fn replies_survive_any_cuts(
        replies in proptest::collection::vec(
            (200u16..600, proptest::collection::vec("[ -~]{0,40}", 1..5)),
            1..6,
        ),
        cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..8),
    ) {
        let bytes = encode(&replies);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let parsed = replies_in_pieces(&bytes, &cuts).unwrap();
        let want: Vec<Reply> = replies
            .iter()
            .map(|(code, lines)| Reply { code: *code, lines: lines.clone() })
            .collect();
        proptest::prop_assert_eq!(parsed, want);
    }

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_are_replies_or_errors(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let _ = replies_in_pieces(&bytes, &[]);
    }
}
