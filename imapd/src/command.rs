//! The IMAP commands a client may send (RFC 9051 §6 and RFC 3501 §6, plus the extensions
//! Postern announces), as plain owned data. What the parser in `parser/` produces and the
//! session consumes. No parsing, no I/O, no policy here: which state allows which command is
//! the session's table.
//!
//! Strings stay bytes: a mailbox name arrives in modified UTF-7 or, after ENABLE
//! UTF8=ACCEPT, in UTF-8 (RFC 6855 §3); decoding it is the mailstore's job.

/// One command: its tag and what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The client's tag, echoed in the tagged reply (RFC 9051 §2.2.1).
    pub tag: Vec<u8>,
    pub body: CommandBody,
}

/// Every command, with its arguments (RFC 9051 §6; extensions cited at each variant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// RFC 9051 §6.2.2; `initial` is SASL-IR's initial response (RFC 4959 §3): base64 text,
    /// or empty for "=".
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    /// RFC 5161 §3.1.
    Enable(Vec<String>),
    /// SELECT and EXAMINE (RFC 9051 §6.3.2–3) with CONDSTORE / QRESYNC parameters (RFC 7162).
    Select {
        mailbox: Vec<u8>,
        read_only: bool,
        condstore: bool,
        qresync: Option<QResync>,
    },
    /// RFC 9051 §6.3.4; `special_use` from CREATE-SPECIAL-USE (RFC 6154 §3).
    Create {
        mailbox: Vec<u8>,
        special_use: Vec<String>,
    },
    Delete(Vec<u8>),
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Subscribe(Vec<u8>),
    Unsubscribe(Vec<u8>),
    /// LIST with LIST-EXTENDED (RFC 5258 §3), LIST-STATUS (RFC 5819) and SPECIAL-USE.
    List(ListCommand),
    Lsub {
        reference: Vec<u8>,
        pattern: Vec<u8>,
    },
    /// RFC 2342 §5.
    Namespace,
    Status {
        mailbox: Vec<u8>,
        items: Vec<StatusItem>,
    },
    Append(Append),
    /// RFC 2177 §3; DONE is read as a line by the session.
    Idle,
    Check,
    Close,
    /// RFC 3691 §2.
    Unselect,
    /// EXPUNGE, or UID EXPUNGE with its set (RFC 4315 §2.1).
    Expunge {
        uids: Option<SequenceSet>,
    },
    Search(Search),
    /// RFC 5256 §3.
    Sort {
        search: Search,
        criteria: Vec<SortCriterion>,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: Vec<FetchItem>,
        /// CHANGEDSINCE (RFC 7162 §3.1.4.1).
        changed_since: Option<u64>,
        /// VANISHED (RFC 7162 §3.2.6), only with CHANGEDSINCE.
        vanished: bool,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        /// UNCHANGEDSINCE (RFC 7162 §3.1.3).
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Vec<u8>>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: Vec<u8>,
    },
    /// RFC 6851 §3.1.
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: Vec<u8>,
    },
    /// RFC 2971 §3.1: field/value pairs, or NIL.
    Id(Option<Vec<IdField>>),
    /// RFC 9208 §4.
    GetQuota(Vec<u8>),
    GetQuotaRoot(Vec<u8>),
    SetQuota {
        root: Vec<u8>,
        limits: Vec<(String, u64)>,
    },
}

impl CommandBody {
    /// The command's name as a client writes it, for logs.
    pub fn name(&self) -> &'static str {
        use CommandBody::*;
        match self {
            Capability => "CAPABILITY",
            Noop => "NOOP",
            Logout => "LOGOUT",
            StartTls => "STARTTLS",
            Authenticate { .. } => "AUTHENTICATE",
            Login { .. } => "LOGIN",
            Enable(_) => "ENABLE",
            Select {
                read_only: false, ..
            } => "SELECT",
            Select {
                read_only: true, ..
            } => "EXAMINE",
            Create { .. } => "CREATE",
            Delete(_) => "DELETE",
            Rename { .. } => "RENAME",
            Subscribe(_) => "SUBSCRIBE",
            Unsubscribe(_) => "UNSUBSCRIBE",
            List(_) => "LIST",
            Lsub { .. } => "LSUB",
            Namespace => "NAMESPACE",
            Status { .. } => "STATUS",
            Append(_) => "APPEND",
            Idle => "IDLE",
            Check => "CHECK",
            Close => "CLOSE",
            Unselect => "UNSELECT",
            Expunge { .. } => "EXPUNGE",
            Search(_) => "SEARCH",
            Sort { .. } => "SORT",
            Fetch { .. } => "FETCH",
            Store { .. } => "STORE",
            Copy { .. } => "COPY",
            Move { .. } => "MOVE",
            Id(_) => "ID",
            GetQuota(_) => "GETQUOTA",
            GetQuotaRoot(_) => "GETQUOTAROOT",
            SetQuota { .. } => "SETQUOTA",
        }
    }
}

/// One field of ID and its value (RFC 2971 §3.3).
pub type IdField = (Vec<u8>, Option<Vec<u8>>);

/// QRESYNC's SELECT parameter (RFC 7162 §3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QResync {
    pub uid_validity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    /// Known sequence numbers and their UIDs.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// A LIST command in its extended form (RFC 5258 §3); a basic LIST has no options and one
/// pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListCommand {
    pub selection: Vec<ListSelect>,
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
    pub returns: Vec<ListReturn>,
}

/// LIST selection options (RFC 5258 §3.1, RFC 6154 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSelect {
    Subscribed,
    Remote,
    RecursiveMatch,
    SpecialUse,
}

/// LIST return options (RFC 5258 §3.2, RFC 5819 §2, RFC 6154 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListReturn {
    Subscribed,
    Children,
    SpecialUse,
    Status(Vec<StatusItem>),
}

/// STATUS data items (RFC 9051 §6.3.11, RFC 7162 §3.1.6, RFC 8438, RFC 7889).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    Recent,
    HighestModSeq,
    AppendLimit,
}

impl StatusItem {
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::Recent => "RECENT",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
        }
    }
}

/// APPEND (RFC 9051 §6.3.12), with literal8 (BINARY, RFC 3516 §4.4) and the UTF8 form
/// (RFC 6855 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub mailbox: Vec<u8>,
    pub flags: Vec<Vec<u8>>,
    pub date: Option<DateTime>,
    pub message: Vec<u8>,
    /// Sent as `~{n}` literal8: may hold NUL and unencoded binary.
    pub binary: bool,
    /// Sent as `UTF8 (~{n})`.
    pub utf8: bool,
}

/// A message sequence number or UID, `*` being the largest in use (RFC 9051 §9 seq-number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNumber {
    Value(u32),
    Largest,
}

/// A sequence set, or `$` — the result saved by SEARCH RETURN (SAVE) (RFC 5182 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    Ranges(Vec<(SeqNumber, SeqNumber)>),
    Saved,
}

/// SEARCH / UID SEARCH (RFC 9051 §6.4.4) with ESEARCH return options (RFC 4731 §3.1) and
/// SAVE (RFC 5182 §2.1). `returns` is `None` for the plain form, which answers `* SEARCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub uid: bool,
    pub returns: Option<Vec<SearchReturn>>,
    pub charset: Option<String>,
    /// Several keys at top level are ANDed.
    pub key: SearchKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
}

/// A date in search keys and APPEND (RFC 9051 §9 date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// `date-time` of APPEND: a date, a time and the zone in minutes east of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub zone_minutes: i16,
}

/// Search keys (RFC 9051 §6.4.4, RFC 7162 §3.1.5 MODSEQ, RFC 5032 OLDER/YOUNGER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    And(Vec<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    Not(Box<SearchKey>),
    Sequence(SequenceSet),
    Uid(SequenceSet),
    All,
    Answered,
    Deleted,
    Draft,
    Flagged,
    New,
    Old,
    Recent,
    Seen,
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unseen,
    Keyword(Vec<u8>),
    Unkeyword(Vec<u8>),
    Bcc(Vec<u8>),
    Body(Vec<u8>),
    Cc(Vec<u8>),
    From(Vec<u8>),
    Subject(Vec<u8>),
    Text(Vec<u8>),
    To(Vec<u8>),
    Header(Vec<u8>, Vec<u8>),
    Before(Date),
    On(Date),
    Since(Date),
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Larger(u64),
    Smaller(u64),
    Older(u32),
    Younger(u32),
    ModSeq {
        /// Entry name and type (`priv`/`shared`/`all`), ignored by Postern's flat modseqs.
        entry: Option<(Vec<u8>, String)>,
        modseq: u64,
    },
}

/// SORT criteria (RFC 5256 §3, DISPLAYFROM/DISPLAYTO of RFC 5957).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// STORE's operation (RFC 9051 §6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

/// FETCH data items (RFC 9051 §6.4.5, BINARY RFC 3516 §4.2, MODSEQ RFC 7162 §3.1.4). The
/// macros ALL, FAST and FULL arrive expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Uid,
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    /// BODY without a section: the non-extensible body structure.
    Body,
    BodyStructure,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    ModSeq,
    /// BODY[section]<partial> and BODY.PEEK[...].
    Section {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    /// BINARY[part]<partial> and BINARY.PEEK[...].
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    BinarySize(Vec<u32>),
}

/// A body section (RFC 9051 §6.4.5 section-spec).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// The MIME part path (`1.2.3`); empty for the whole message.
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// HEADER.FIELDS and HEADER.FIELDS.NOT.
    HeaderFields {
        not: bool,
        fields: Vec<Vec<u8>>,
    },
    Text,
    /// Only with a part number.
    Mime,
}
