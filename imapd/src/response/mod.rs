//! The server's responses (RFC 9051 §7) as borrowed data and their encoding into bytes:
//! status responses with response codes (§7.1), untagged data (§7.2–7.4 and the
//! extensions'), and continuation requests (§7.5). The session builds these from its own
//! state; nothing here decides what to answer. FETCH items, envelopes and body structures
//! are in [`fetch`]; strings and numbers in [`wire`].

pub mod fetch;
#[cfg(test)]
mod tests;
pub mod wire;

pub use fetch::{
    Address, BodyExt, BodyFields, BodyStructure, Disposition, Envelope, FetchAttr, MultiExt,
    SingleKind, SystemFlags,
};
pub use wire::Encoding;

use crate::command::StatusItem;

/// The result of a tagged command (RFC 9051 §7.1.1–7.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// An untagged status response (RFC 9051 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untagged {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

/// Response codes (RFC 9051 §7.1, RFC 5530, and the extensions cited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code<'a> {
    Alert,
    BadCharset(&'a [&'a str]),
    Capability(&'a [&'a str]),
    Parse,
    PermanentFlags(&'a [&'a [u8]]),
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    /// RFC 4315 §3.
    AppendUid {
        uid_validity: u32,
        uids: &'a [(u32, u32)],
    },
    CopyUid {
        uid_validity: u32,
        source: &'a [(u32, u32)],
        destination: &'a [(u32, u32)],
    },
    UidNotSticky,
    /// RFC 7162 §3.1.2.1, §3.1.2.2, §3.1.3, §3.2.11.
    HighestModSeq(u64),
    NoModSeq,
    Modified(&'a [(u32, u32)]),
    Closed,
    /// RFC 4469 §5, RFC 7888 §4.
    TooBig,
    /// RFC 5530 §3.
    Unavailable,
    AuthenticationFailed,
    AuthorizationFailed,
    Expired,
    PrivacyRequired,
    ContactAdmin,
    NoPerm,
    InUse,
    ExpungeIssued,
    Corruption,
    ServerBug,
    ClientBug,
    Cannot,
    Limit,
    OverQuota,
    AlreadyExists,
    NonExistent,
    /// RFC 3516 §4.3.
    UnknownCte,
    /// RFC 9051 §7.1.
    HasChildren,
    /// RFC 6154 §3.
    UseAttr,
    /// RFC 5182 §2.1.
    NotSaved,
    /// Any other atom, written as given.
    Other(&'a str),
}

/// One field of an ID response and its value (RFC 2971 §3.3).
pub type IdField<'a> = (&'a str, Option<&'a [u8]>);

/// A mailbox's STATUS data value (RFC 9051 §7.3.3).
pub type StatusValue = (StatusItem, u64);

/// Extended data of a LIST response (RFC 5258 §3.5, RFC 9051 §7.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListExtended<'a> {
    ChildInfo(&'a [&'a str]),
    OldName(&'a [u8]),
}

/// One namespace of a NAMESPACE response (RFC 2342 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceDesc<'a> {
    pub prefix: &'a [u8],
    pub delimiter: Option<u8>,
}

/// Untagged data (RFC 9051 §7.2–7.4 and extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data<'a> {
    Capability(&'a [&'a str]),
    /// LIST or LSUB (RFC 9051 §7.3.1; RFC 3501 §7.2.3).
    List {
        lsub: bool,
        attributes: &'a [&'a str],
        delimiter: Option<u8>,
        mailbox: &'a [u8],
        extended: &'a [ListExtended<'a>],
    },
    Status {
        mailbox: &'a [u8],
        items: &'a [StatusValue],
    },
    Flags(&'a [&'a [u8]]),
    Exists(u32),
    Recent(u32),
    Expunge(u32),
    /// RFC 7162 §3.2.10.
    Vanished {
        earlier: bool,
        uids: &'a [(u32, u32)],
    },
    /// `* SEARCH` with the MODSEQ of RFC 7162 §3.1.5.
    Search {
        ids: &'a [u32],
        modseq: Option<u64>,
    },
    /// RFC 4731 §3.1, RFC 9051 §7.3.4.
    ESearch(ESearch<'a>),
    /// RFC 5256 §4.
    Sort {
        ids: &'a [u32],
        modseq: Option<u64>,
    },
    /// RFC 5161 §3.2.
    Enabled(&'a [&'a str]),
    /// RFC 2971 §3.2.
    Id(Option<&'a [IdField<'a>]>),
    Namespace {
        personal: &'a [NamespaceDesc<'a>],
        other: &'a [NamespaceDesc<'a>],
        shared: &'a [NamespaceDesc<'a>],
    },
    /// RFC 9208 §5.1: resource, usage, limit.
    Quota {
        root: &'a [u8],
        resources: &'a [(&'a str, u64, u64)],
    },
    QuotaRoot {
        mailbox: &'a [u8],
        roots: &'a [&'a [u8]],
    },
    Fetch {
        seq: u32,
        attrs: &'a [FetchAttr<'a>],
    },
}

/// The ESEARCH response's parts (RFC 4731 §3.1); `None` parts are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ESearch<'a> {
    /// The tag of the command it answers.
    pub tag: Option<&'a [u8]>,
    pub uid: bool,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub count: Option<u32>,
    pub all: Option<&'a [(u32, u32)]>,
    pub modseq: Option<u64>,
}

/// Everything the server writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    Tagged {
        tag: &'a [u8],
        status: Status,
        code: Option<Code<'a>>,
        text: &'a str,
    },
    Untagged {
        status: Untagged,
        code: Option<Code<'a>>,
        text: &'a str,
    },
    /// `+ text` (RFC 9051 §7.5).
    Continue(&'a str),
    /// `+ base64` for an AUTHENTICATE challenge (RFC 9051 §6.2.2); empty gives `+ `.
    Challenge(&'a [u8]),
    Data(Data<'a>),
}

impl Response<'_> {
    /// Appends the response, CRLF included.
    pub fn encode(&self, out: &mut Vec<u8>, enc: Encoding) {
        match self {
            Response::Tagged {
                tag,
                status,
                code,
                text,
            } => {
                out.extend_from_slice(tag);
                out.push(b' ');
                out.extend_from_slice(match status {
                    Status::Ok => b"OK",
                    Status::No => b"NO",
                    Status::Bad => b"BAD",
                });
                resp_text(out, code.as_ref(), text);
            }
            Response::Untagged { status, code, text } => {
                out.extend_from_slice(match status {
                    Untagged::Ok => b"* OK",
                    Untagged::No => b"* NO",
                    Untagged::Bad => b"* BAD",
                    Untagged::PreAuth => b"* PREAUTH",
                    Untagged::Bye => b"* BYE",
                });
                resp_text(out, code.as_ref(), text);
            }
            Response::Continue(text) => {
                out.extend_from_slice(b"+ ");
                wire::text(out, text);
            }
            Response::Challenge(b64) => {
                out.extend_from_slice(b"+ ");
                out.extend_from_slice(b64);
            }
            Response::Data(data) => data.encode(out, enc),
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The encoding as a new vector (tests and rare replies).
    pub fn to_bytes(&self, enc: Encoding) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out, enc);
        out
    }
}

/// resp-text = ["[" resp-text-code "]" SP] text (RFC 9051 §9), after a leading space.
fn resp_text(out: &mut Vec<u8>, code: Option<&Code>, text: &str) {
    out.push(b' ');
    if let Some(code) = code {
        out.push(b'[');
        code.encode(out);
        out.extend_from_slice(b"] ");
    }
    wire::text(out, text);
}

impl Code<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        use Code::*;
        let simple: &[u8] = match self {
            BadCharset(cs) if !cs.is_empty() => return word_list(out, b"BADCHARSET", cs),
            Capability(caps) => {
                out.extend_from_slice(b"CAPABILITY ");
                return wire::words(out, caps);
            }
            PermanentFlags(f) => return word_list(out, b"PERMANENTFLAGS", f),
            UidNext(n) => return word_number(out, b"UIDNEXT", (*n).into()),
            UidValidity(n) => return word_number(out, b"UIDVALIDITY", (*n).into()),
            Unseen(n) => return word_number(out, b"UNSEEN", (*n).into()),
            HighestModSeq(n) => return word_number(out, b"HIGHESTMODSEQ", *n),
            AppendUid { uid_validity, uids } => {
                word_number(out, b"APPENDUID", (*uid_validity).into());
                out.push(b' ');
                return wire::ranges(out, uids);
            }
            CopyUid {
                uid_validity,
                source,
                destination,
            } => {
                word_number(out, b"COPYUID", (*uid_validity).into());
                out.push(b' ');
                wire::ranges(out, source);
                out.push(b' ');
                return wire::ranges(out, destination);
            }
            Modified(set) => {
                out.extend_from_slice(b"MODIFIED ");
                return wire::ranges(out, set);
            }
            Other(atom) => atom.as_bytes(),
            _ => self.name(),
        };
        out.extend_from_slice(simple);
    }

    /// The names of the codes without arguments.
    fn name(&self) -> &'static [u8] {
        use Code::*;
        match self {
            Alert => b"ALERT",
            BadCharset(_) => b"BADCHARSET",
            Parse => b"PARSE",
            ReadOnly => b"READ-ONLY",
            ReadWrite => b"READ-WRITE",
            TryCreate => b"TRYCREATE",
            UidNotSticky => b"UIDNOTSTICKY",
            NoModSeq => b"NOMODSEQ",
            Closed => b"CLOSED",
            TooBig => b"TOOBIG",
            Unavailable => b"UNAVAILABLE",
            AuthenticationFailed => b"AUTHENTICATIONFAILED",
            AuthorizationFailed => b"AUTHORIZATIONFAILED",
            Expired => b"EXPIRED",
            PrivacyRequired => b"PRIVACYREQUIRED",
            ContactAdmin => b"CONTACTADMIN",
            NoPerm => b"NOPERM",
            InUse => b"INUSE",
            ExpungeIssued => b"EXPUNGEISSUED",
            Corruption => b"CORRUPTION",
            ServerBug => b"SERVERBUG",
            ClientBug => b"CLIENTBUG",
            Cannot => b"CANNOT",
            Limit => b"LIMIT",
            OverQuota => b"OVERQUOTA",
            AlreadyExists => b"ALREADYEXISTS",
            NonExistent => b"NONEXISTENT",
            UnknownCte => b"UNKNOWN-CTE",
            HasChildren => b"HASCHILDREN",
            UseAttr => b"USEATTR",
            NotSaved => b"NOTSAVED",
            _ => b"",
        }
    }
}

fn word_number(out: &mut Vec<u8>, word: &[u8], n: u64) {
    out.extend_from_slice(word);
    out.push(b' ');
    wire::number(out, n);
}

fn word_list<S: AsRef<[u8]>>(out: &mut Vec<u8>, word: &[u8], items: &[S]) {
    out.extend_from_slice(word);
    out.push(b' ');
    wire::atom_list(out, items);
}

mod data;
