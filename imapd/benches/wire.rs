//! Throughput of the IMAP wire layer: framing + parsing of a realistic command mix, and
//! encoding `FETCH (UID FLAGS RFC822.SIZE ENVELOPE)` for a 20,000-message mailbox.
//! Run with `cargo bench -p postern-imapd --bench wire`; it prints its figures.

use std::hint::black_box;
use std::time::Instant;

use imapd::frame::{Framer, Limits, Step};
use imapd::parser::{ParseLimits, parse_command};
use imapd::response::{Address, Data, Encoding, Envelope, FetchAttr, Response, SystemFlags};

/// What a session of Thunderbird, mutt, mbsync and imaplib sends, roughly in proportion.
const MIX: &str = "\
1 capability\r\n\
2 authenticate PLAIN AGpvZQBzZWNyZXQ=\r\n\
3 ID (\"name\" \"Thunderbird\" \"version\" \"115.0\")\r\n\
4 enable UTF8=ACCEPT CONDSTORE\r\n\
5 list (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)\r\n\
6 select \"INBOX\" (CONDSTORE)\r\n\
7 UID fetch 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n\
8 UID fetch 4 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n\
9 UID STORE 5 +FLAGS (\\Seen)\r\n\
10 UID MOVE 5 \"Trash\"\r\n\
11 NOOP\r\n\
12 STATUS \"Sent\" (UIDNEXT MESSAGES UNSEEN RECENT)\r\n\
13 UID SEARCH RETURN (ALL) SINCE 1-Feb-2024 NOT DELETED\r\n\
14 APPEND \"Sent\" (\\Seen) {111+}\r\nFrom: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\nMessage-ID: <1@example.org>\r\n\r\nA short body line\r\nbye\r\n\r\n\
15 UID FETCH 1:1000000000 (UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TUID)])\r\n\
16 UID STORE 5 +FLAGS.SILENT \\Seen\r\n\
17 UID EXPUNGE 3000:3002\r\n\
18 SEARCH OR (FROM \"smith\" SUBJECT \"report\") (SINCE 1-Jan-2024 UNSEEN)\r\n\
19 IDLE\r\n\
20 LOGOUT\r\n";

fn parse_mix(rounds: usize) {
    let input = MIX.repeat(rounds);
    let buf = input.as_bytes();
    let limits = Limits::default();
    let parse_limits = ParseLimits::default();
    let start = Instant::now();
    let mut pos = 0;
    let mut commands = 0usize;
    let mut framer = Framer::new();
    while pos < buf.len() {
        match framer.advance(&buf[pos..], &limits) {
            Step::Command(n) => {
                let cmd = parse_command(&buf[pos..pos + n], &parse_limits).expect("valid mix");
                black_box(cmd);
                commands += 1;
                pos += n;
            }
            Step::SendContinuation => {}
            other => panic!("{other:?}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parse: {commands} commands ({:.1} MB) in {:.1} ms: {:.0} commands/s, {:.0} MB/s",
        buf.len() as f64 / 1e6,
        secs * 1e3,
        commands as f64 / secs,
        buf.len() as f64 / 1e6 / secs
    );
}

/// The per-message data a mailstore cache would hold.
struct Cached {
    uid: u32,
    size: u64,
    date: String,
    subject: String,
    from_name: String,
    from_mailbox: String,
    to_mailbox: String,
    cc_mailbox: String,
    message_id: String,
    host: String,
}

fn mailbox(n: u32) -> Vec<Cached> {
    (1..=n)
        .map(|i| Cached {
            uid: i,
            size: 4096 + u64::from(i % 977),
            date: format!("Mon, {} Jan 2024 10:{:02}:00 +0100", 1 + i % 28, i % 60),
            subject: format!("Re: [list] Weekly report number {i} \"draft\" \\ final"),
            from_name: format!("Sender Number {}", i % 100),
            from_mailbox: format!("sender{}", i % 100),
            to_mailbox: "alice".into(),
            cc_mailbox: format!("team{}", i % 7),
            message_id: format!("<{i}.{}@mail.example.org>", i * 7919),
            host: "example.org".into(),
        })
        .collect()
}

fn address<'a>(name: Option<&'a String>, mailbox: &'a str, host: &'a str) -> Address<'a> {
    Address {
        name: name.map(|n| n.as_bytes()),
        adl: None,
        mailbox: Some(mailbox.as_bytes()),
        host: Some(host.as_bytes()),
    }
}

fn encode_fetch(msgs: &[Cached], enc: Encoding) -> (usize, f64) {
    let start = Instant::now();
    let mut out = Vec::with_capacity(256 * 1024);
    let mut total = 0;
    for (seq, m) in msgs.iter().enumerate() {
        let addr = |name, mailbox| address(name, mailbox, &m.host);
        let from = vec![addr(Some(&m.from_name), &m.from_mailbox)];
        let envelope = Envelope {
            date: Some(m.date.as_bytes()),
            subject: Some(m.subject.as_bytes()),
            sender: from.clone(),
            reply_to: from.clone(),
            from,
            to: vec![addr(None, &m.to_mailbox)],
            cc: vec![addr(None, &m.cc_mailbox)],
            bcc: vec![],
            in_reply_to: None,
            message_id: Some(m.message_id.as_bytes()),
        };
        let system = SystemFlags(if m.uid % 3 == 0 { SystemFlags::SEEN } else { 0 });
        let attrs = [
            FetchAttr::Uid(m.uid),
            FetchAttr::Flags {
                system,
                keywords: &[],
            },
            FetchAttr::Rfc822Size(m.size),
            FetchAttr::Envelope(&envelope),
        ];
        Response::Data(Data::Fetch {
            seq: seq as u32 + 1,
            attrs: &attrs,
        })
        .encode(&mut out, enc);
        // As the connection does: written out every 256 KiB.
        if out.len() >= 256 * 1024 {
            total += out.len();
            black_box(&out);
            out.clear();
        }
    }
    total += out.len();
    black_box(&out);
    (total, start.elapsed().as_secs_f64())
}

fn main() {
    parse_mix(2_000);
    let msgs = mailbox(20_000);
    encode_fetch(&msgs, Encoding::default());
    let mut best = f64::MAX;
    let mut bytes = 0;
    for _ in 0..10 {
        let (b, secs) = encode_fetch(&msgs, Encoding::default());
        bytes = b;
        best = best.min(secs);
    }
    println!(
        "encode: FETCH (UID FLAGS RFC822.SIZE ENVELOPE) x 20000 = {:.1} MB in {:.1} ms (best of 10): {:.0} messages/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        best * 1e3,
        20_000.0 / best,
        bytes as f64 / 1e6 / best
    );
}
