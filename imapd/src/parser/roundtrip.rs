//! Property test: random valid commands, written by a small client-side encoder (strings
//! as atoms, quoted strings, synchronizing or non-synchronizing literals), framed and parsed
//! back, give the same command.

use proptest::prelude::*;

use crate::command::*;
use crate::frame::Limits;
use crate::testutil::{Event, drive};

/// How the encoder writes a string.
#[derive(Debug, Clone, Copy)]
enum Form {
    Quoted,
    Sync,
    NonSync,
}

fn string(out: &mut Vec<u8>, s: &[u8], form: Form) {
    let quotable = !s.iter().any(|&b| b == b'\r' || b == b'\n');
    match form {
        Form::Quoted if quotable => {
            out.push(b'"');
            for &b in s {
                if b == b'"' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'"');
        }
        Form::NonSync => {
            out.extend_from_slice(format!("{{{}+}}\r\n", s.len()).as_bytes());
            out.extend_from_slice(s);
        }
        _ => {
            out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
            out.extend_from_slice(s);
        }
    }
}

fn set(out: &mut Vec<u8>, s: &SequenceSet) {
    let n = |x: &SeqNumber| match x {
        SeqNumber::Value(v) => v.to_string(),
        SeqNumber::Largest => "*".into(),
    };
    match s {
        SequenceSet::Saved => out.push(b'$'),
        SequenceSet::Ranges(r) => {
            let parts: Vec<String> = r
                .iter()
                .map(|(a, b)| format!("{}:{}", n(a), n(b)))
                .collect();
            out.extend_from_slice(parts.join(",").as_bytes());
        }
    }
}

fn key(out: &mut Vec<u8>, k: &SearchKey, form: Form) {
    match k {
        SearchKey::And(keys) => {
            out.push(b'(');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                key(out, k, form);
            }
            out.push(b')');
        }
        SearchKey::Or(a, b) => {
            out.extend_from_slice(b"OR ");
            key(out, a, form);
            out.push(b' ');
            key(out, b, form);
        }
        SearchKey::Not(a) => {
            out.extend_from_slice(b"NOT ");
            key(out, a, form);
        }
        SearchKey::Uid(s) => {
            out.extend_from_slice(b"UID ");
            set(out, s);
        }
        SearchKey::Sequence(s) => set(out, s),
        SearchKey::Subject(s) => {
            out.extend_from_slice(b"SUBJECT ");
            string(out, s, form);
        }
        SearchKey::Larger(n) => out.extend_from_slice(format!("LARGER {n}").as_bytes()),
        SearchKey::Since(d) => {
            out.extend_from_slice(format!("SINCE {}-Mar-{}", d.day, d.year).as_bytes())
        }
        SearchKey::Seen => out.extend_from_slice(b"SEEN"),
        other => panic!("not generated: {other:?}"),
    }
}

fn encode(cmd: &CommandBody, form: Form) -> Vec<u8> {
    let mut out = b"t1 ".to_vec();
    match cmd {
        CommandBody::Login { user, password } => {
            out.extend_from_slice(b"LOGIN ");
            string(&mut out, user, form);
            out.push(b' ');
            string(&mut out, password, form);
        }
        CommandBody::Search(s) => {
            out.extend_from_slice(if s.uid { b"UID SEARCH " } else { b"SEARCH " });
            key(&mut out, &s.key, form);
        }
        CommandBody::Fetch { uid, set: s, .. } => {
            out.extend_from_slice(if *uid { b"UID FETCH " } else { b"FETCH " });
            set(&mut out, s);
            out.extend_from_slice(b" (UID FLAGS)");
        }
        other => panic!("not generated: {other:?}"),
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..20)
}

fn seq_set() -> impl Strategy<Value = SequenceSet> {
    let num = prop_oneof![
        (1u32..=u32::MAX).prop_map(SeqNumber::Value),
        Just(SeqNumber::Largest)
    ];
    prop_oneof![
        Just(SequenceSet::Saved),
        proptest::collection::vec((num.clone(), num), 1..4).prop_map(SequenceSet::Ranges),
    ]
}

fn search_key() -> impl Strategy<Value = SearchKey> {
    let leaf = prop_oneof![
        Just(SearchKey::Seen),
        bytes().prop_map(SearchKey::Subject),
        (0u64..1 << 40).prop_map(SearchKey::Larger),
        (1u8..=31, 1000u16..=9999).prop_map(|(day, year)| SearchKey::Since(Date {
            year,
            month: 3,
            day
        })),
        seq_set().prop_map(SearchKey::Uid),
        seq_set().prop_map(SearchKey::Sequence),
    ];
    leaf.prop_recursive(4, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(SearchKey::And),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| SearchKey::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|k| SearchKey::Not(Box::new(k))),
        ]
    })
}

fn command() -> impl Strategy<Value = CommandBody> {
    prop_oneof![
        (bytes(), bytes()).prop_map(|(user, password)| CommandBody::Login { user, password }),
        (any::<bool>(), search_key()).prop_map(|(uid, key)| {
            CommandBody::Search(Search {
                uid,
                returns: None,
                charset: None,
                key,
            })
        }),
        (any::<bool>(), seq_set()).prop_map(|(uid, set)| CommandBody::Fetch {
            uid,
            set,
            items: vec![FetchItem::Uid, FetchItem::Flags],
            changed_since: None,
            vanished: false,
        }),
    ]
}

proptest! {
    #[test]
    fn commands_round_trip(
        cmd in command(),
        form in prop_oneof![Just(Form::Quoted), Just(Form::Sync), Just(Form::NonSync)],
    ) {
        let wire = encode(&cmd, form);
        let whole = drive([&wire[..]], &Limits::default());
        let bytewise = drive(wire.chunks(1), &Limits::default());
        prop_assert_eq!(&whole, &bytewise);
        let parsed: Vec<_> = whole.0.into_iter().filter(|e| *e != Event::Continue).collect();
        prop_assert_eq!(parsed.len(), 1);
        let Event::Command(Ok(got)) = &parsed[0] else {
            return Err(TestCaseError::fail(format!("{parsed:?} from {:?}", String::from_utf8_lossy(&wire))));
        };
        prop_assert_eq!(&got.body, &cmd, "{:?}", String::from_utf8_lossy(&wire));
    }
}
