//! The per-folder index log, `postern-index.log`: its record types, their encoding, and the
//! reading of a log (or of the part of it appended since a known offset). No locking and no
//! Maildir knowledge here: `folder.rs` decides when to read, `write.rs` when to append.
//!
//! # Format (version 1)
//!
//! An append-only text file of records, one per line:
//!
//! ```text
//! <crc32 of the JSON, 8 lowercase hex digits> <compact JSON object>\n
//! ```
//!
//! The CRC is CRC-32/ISO-HDLC (the one of zlib and Ethernet) over the JSON bytes. The JSON
//! object's `"t"` names the record:
//!
//! | `t` | record | fields |
//! |-----|--------|--------|
//! | `h` | header, always first | `v` format version, `uidvalidity`, `uidnext`, `modseq` (floors for both counters) |
//! | `a` | message added | `uid`, `ms` modseq, `f` file (`new/<base>` or `cur/<base>:2,<info>`), `fl` system flags as Maildir letters, `kw` keywords, `size`, `vsize` (size with CRLF line ends), `date` internal date (Unix seconds) |
//! | `f` | flags changed | `uid`, `ms`, `fl`, `kw`, `f` the file name after the change |
//! | `m` | file moved or renamed, flags unchanged | `uid`, `f` |
//! | `x` | message expunged | `uid`, `ms` |
//! | `s` | directories scanned | `new`, `cur`: mtimes of `new/` and `cur/` (ns) that the scan covered |
//!
//! Adds carry strictly increasing UIDs; every `a`, `f` and `x` carries a modseq greater than all
//! before it (RFC 7162 §3.1.1), so the log order is the modseq order.
//!
//! A line that is incomplete (no `\n` yet), fails its checksum or does not parse ends the
//! readable log: everything from it on is ignored. Readers without the lock can therefore
//! read while a writer appends, and a tail torn by a crash is invisible; the next writer, under
//! the lock, truncates it before appending. A record can only follow a torn one if it was never
//! made durable, so no record a client has seen is lost this way (readers `fdatasync` before
//! exposing what they read: see `folder.rs`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Flags;

mod fast;

/// The format version this code writes and reads.
pub const VERSION: u32 = 1;

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum Record {
    #[serde(rename = "h")]
    Header {
        v: u32,
        uidvalidity: u32,
        uidnext: u32,
        modseq: u64,
    },
    #[serde(rename = "a")]
    Add(Added),
    #[serde(rename = "f")]
    Flags {
        uid: u32,
        ms: u64,
        fl: Flags,
        kw: Vec<String>,
        f: String,
    },
    #[serde(rename = "m")]
    Moved { uid: u32, f: String },
    #[serde(rename = "x")]
    Expunge { uid: u32, ms: u64 },
    #[serde(rename = "s")]
    Scanned { new: i64, cur: i64 },
}

/// The body of an add record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    pub uid: u32,
    pub ms: u64,
    pub f: String,
    pub fl: Flags,
    pub kw: Vec<String>,
    pub size: u64,
    pub vsize: u64,
    pub date: i64,
}

/// Appends the encoding of `record` to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    // The JSON is written in place after room for its checksum, which is filled in after.
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    // Serializing these plain types into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, record).is_err() {
        out.truncate(start);
        return;
    }
    let crc = crc32(&out[start + 9..]);
    for (i, b) in out[start..start + 8].iter_mut().enumerate() {
        *b = b"0123456789abcdef"[(crc >> (28 - 4 * i) & 0xf) as usize];
    }
    out.push(b'\n');
}

/// Records decoded from a chunk of the log.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<Record>,
    /// Bytes of `data` holding the complete, valid records: where the next read starts.
    pub consumed: usize,
    /// Whether the chunk ended with a bad (torn or corrupt) line rather than cleanly or with a
    /// line still being written.
    pub bad_tail: bool,
}

/// Decodes the complete valid records at the start of `data`.
pub fn decode(data: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut rest = data;
    while let Some(end) = memchr::memchr(b'\n', rest) {
        let Some(record) = decode_line(&rest[..end]) else {
            out.bad_tail = true;
            return out;
        };
        out.records.push(record);
        out.consumed += end + 1;
        rest = &rest[end + 1..];
    }
    out
}

fn decode_line(line: &[u8]) -> Option<Record> {
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    if line[8] != b' ' || parse_hex32(crc)? != crc32(json) {
        return None;
    }
    fast::decode(json).or_else(|| serde_json::from_slice::<Raw>(json).ok()?.into_record())
}

/// Eight hex digits (either case) as a `u32`.
fn parse_hex32(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some(acc << 4 | d)
    })
}

/// Any record's fields, as read: one flat struct decodes much faster than the tagged enum
/// (no buffering of the object before the tag is known) and borrows the strings that have
/// no escapes. [`Raw::into_record`] checks that the fields of the record named by `t` are
/// there.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    t: Cow<'a, str>,
    v: Option<u32>,
    uidvalidity: Option<u32>,
    uidnext: Option<u32>,
    modseq: Option<u64>,
    uid: Option<u32>,
    ms: Option<u64>,
    f: Option<String>,
    fl: Option<Letters>,
    kw: Option<Vec<String>>,
    size: Option<u64>,
    vsize: Option<u64>,
    date: Option<i64>,
    new: Option<i64>,
    cur: Option<i64>,
}

impl Raw<'_> {
    fn into_record(self) -> Option<Record> {
        Some(match &*self.t {
            "h" => Record::Header {
                v: self.v?,
                uidvalidity: self.uidvalidity?,
                uidnext: self.uidnext?,
                modseq: self.modseq?,
            },
            "a" => Record::Add(Added {
                uid: self.uid?,
                ms: self.ms?,
                f: self.f?,
                fl: self.fl?.0,
                kw: self.kw?,
                size: self.size?,
                vsize: self.vsize?,
                date: self.date?,
            }),
            "f" => Record::Flags {
                uid: self.uid?,
                ms: self.ms?,
                fl: self.fl?.0,
                kw: self.kw?,
                f: self.f?,
            },
            "m" => Record::Moved {
                uid: self.uid?,
                f: self.f?,
            },
            "x" => Record::Expunge {
                uid: self.uid?,
                ms: self.ms?,
            },
            "s" => Record::Scanned {
                new: self.new?,
                cur: self.cur?,
            },
            _ => return None,
        })
    }
}

/// System flags as Maildir letters, read without an allocation.
struct Letters(Flags);

impl<'de> Deserialize<'de> for Letters {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Letters, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Letters;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("Maildir flag letters")
            }
            fn visit_str<E: serde::de::Error>(self, letters: &str) -> Result<Letters, E> {
                Ok(Letters(Flags::from_maildir(letters)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// CRC-32/ISO-HDLC (the checksum of zlib and Ethernet).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_record_is_one_checksummed_line() {
        let mut out = Vec::new();
        encode(&Record::Expunge { uid: 7, ms: 9 }, &mut out);
        assert_eq!(out, b"3637ae09 {\"t\":\"x\",\"uid\":7,\"ms\":9}\n".to_vec());
        let decoded = decode(&out);
        assert_eq!(decoded.records, vec![Record::Expunge { uid: 7, ms: 9 }]);
        assert_eq!(decoded.consumed, out.len());
    }

    #[test]
    fn an_incomplete_line_waits_and_a_bad_line_ends_the_log() {
        let mut out = Vec::new();
        encode(
            &Record::Moved {
                uid: 1,
                f: "cur/a:2,S".into(),
            },
            &mut out,
        );
        let good = out.len();
        encode(&Record::Expunge { uid: 1, ms: 2 }, &mut out);
        let partial = decode(&out[..out.len() - 1]);
        assert_eq!(
            (partial.records.len(), partial.consumed, partial.bad_tail),
            (1, good, false)
        );
        out[good + 3] ^= 1;
        let bad = decode(&out);
        assert_eq!(
            (bad.records.len(), bad.consumed, bad.bad_tail),
            (1, good, true)
        );
    }

    fn flags() -> impl Strategy<Value = Flags> {
        (0u8..32).prop_map(Flags::from_bits)
    }

    fn record() -> impl Strategy<Value = Record> {
        let name = "[a-zA-Z0-9.,=:/\\\\ \"é\n]{0,30}";
        let kw = proptest::collection::vec("[!-~]{1,12}", 0..3);
        prop_oneof![
            (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(a, b, c)| Record::Header {
                v: VERSION,
                uidvalidity: a,
                uidnext: b,
                modseq: c
            }),
            (
                any::<u32>(),
                any::<u64>(),
                name,
                flags(),
                kw.clone(),
                any::<u64>(),
                any::<u64>(),
                any::<i64>()
            )
                .prop_map(|(uid, ms, f, fl, kw, size, vsize, date)| Record::Add(
                    Added {
                        uid,
                        ms,
                        f,
                        fl,
                        kw,
                        size,
                        vsize,
                        date
                    }
                )),
            (any::<u32>(), any::<u64>(), flags(), kw, name)
                .prop_map(|(uid, ms, fl, kw, f)| { Record::Flags { uid, ms, fl, kw, f } }),
            (any::<u32>(), name).prop_map(|(uid, f)| Record::Moved { uid, f }),
            (any::<u32>(), any::<u64>()).prop_map(|(uid, ms)| Record::Expunge { uid, ms }),
            (any::<i64>(), any::<i64>()).prop_map(|(new, cur)| Record::Scanned { new, cur }),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(records in proptest::collection::vec(record(), 0..20)) {
            let mut out = Vec::new();
            for r in &records {
                encode(r, &mut out);
            }
            let decoded = decode(&out);
            prop_assert_eq!(&decoded.records, &records);
            // Adds and flag changes whose strings need no escape take the fast path.
            for r in &records {
                let json = serde_json::to_vec(r).unwrap();
                let plain = !json.contains(&b'\\');
                if plain && matches!(r, Record::Add(_) | Record::Flags { .. }) {
                    prop_assert_eq!(fast::decode(&json), Some(r.clone()));
                }
            }
            prop_assert_eq!(decoded.consumed, out.len());
            prop_assert!(!decoded.bad_tail);
        }

        /// The decoder reads exactly what the tagged enum's derived decoder reads, also for
        /// records missing a field or naming an unknown type.
        #[test]
        fn the_fast_decoder_agrees_with_the_derived_one(
            r in record(),
            drop in any::<prop::sample::Index>(),
            t in "[hafmxsz]",
        ) {
            let json = serde_json::to_vec(&r).unwrap();
            let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let object = value.as_object_mut().unwrap();
            let keys: Vec<String> = object.keys().cloned().collect();
            let variants = [
                json.clone(),
                {
                    let mut v = object.clone();
                    v.remove(&keys[drop.index(keys.len())]);
                    serde_json::to_vec(&v).unwrap()
                },
                {
                    let mut v = object.clone();
                    v.insert("t".into(), serde_json::Value::String(t));
                    serde_json::to_vec(&v).unwrap()
                },
            ];
            let mut variants = variants.to_vec();
            // Numbers and strings at the edges of what either decoder takes, in place.
            let text = String::from_utf8(json.clone()).unwrap();
            for token in [
                "01", "-0", "-1", "1e3", "1.0", "4294967296", "18446744073709551616",
                "9223372036854775808", "-9223372036854775808", "\"\\u0053\"", "[\"a\",]",
            ] {
                let key = &keys[drop.index(keys.len())];
                let Some(at) = text.find(&format!("\"{key}\":")) else { continue };
                let start = at + key.len() + 3;
                let end = start + text[start..].find([',', '}']).unwrap_or(0);
                if end > start && !text[start..end].contains('"') && !text[start..end].contains('[') {
                    variants.push(format!("{}{token}{}", &text[..start], &text[end..]).into_bytes());
                }
            }
            for json in variants {
                let mut line = format!("{:08x} ", crc32(&json)).into_bytes();
                line.extend_from_slice(&json);
                let derived = serde_json::from_slice::<Record>(&json).ok();
                prop_assert_eq!(decode_line(&line), derived);
            }
        }

        /// A log cut anywhere, or with any byte of its tail changed, decodes without a panic
        /// to a prefix that holds every record complete before the damage.
        #[test]
        fn damage_never_loses_an_earlier_record(
            records in proptest::collection::vec(record(), 1..12),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            garbage in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut out = Vec::new();
            let mut ends = Vec::new();
            for r in &records {
                encode(r, &mut out);
                ends.push(out.len());
            }
            let cut = cut.index(out.len() + 1);
            let mut damaged = out[..cut].to_vec();
            let at = flip.index(damaged.len().max(1));
            if let Some(b) = damaged.get_mut(at) {
                *b ^= 0x5a;
            }
            damaged.extend_from_slice(&garbage);
            let decoded = decode(&damaged);
            let intact = ends.iter().filter(|&&e| e <= cut.min(at)).count();
            prop_assert!(decoded.records.len() >= intact);
            prop_assert_eq!(&decoded.records[..intact], &records[..intact]);
            prop_assert!(decoded.consumed <= damaged.len());
        }
    }
}
