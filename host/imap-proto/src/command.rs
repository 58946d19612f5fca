//! The commands a client can send, as parsed (RFC 9051 §6 and the
//! extensions mailgate offers). Mailbox names are kept as the bytes sent:
//! whether they are UTF-8 or modified UTF-7 depends on the session
//! (RFC 9051 §5.1, RFC 3501 §5.1.3), which decodes them.

use crate::sequence::SequenceSet;

/// A tagged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The client's tag.
    pub tag: String,
    /// What it asks.
    pub body: CommandBody,
}

/// The fields of an ID command (RFC 2971), as the client's bytes: each
/// name with its value (`None` for NIL).
pub type IdParams = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The commands, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    /// CAPABILITY
    Capability,
    /// NOOP
    Noop,
    /// LOGOUT
    Logout,
    /// STARTTLS (RFC 9051 §6.2.1; refused where the listener has no TLS).
    StartTls,
    /// LOGIN user password
    Login {
        /// User name.
        user: Vec<u8>,
        /// Password.
        password: Vec<u8>,
    },
    /// AUTHENTICATE mechanism [initial-response] (RFC 4959 SASL-IR).
    Authenticate {
        /// Mechanism name, upper-cased.
        mechanism: String,
        /// The initial response (base64 or `=`).
        initial: Option<String>,
    },
    /// ENABLE capability... (RFC 5161)
    Enable(Vec<String>),
    /// ID (params) or ID NIL (RFC 2971). The fields are kept as the
    /// client's bytes: they are only logged, and the log writes bytes
    /// that are not UTF-8 as `\xNN`.
    Id(Option<IdParams>),
    /// NAMESPACE (RFC 2342)
    Namespace,
    /// SELECT / EXAMINE
    Select {
        /// The mailbox.
        mailbox: Vec<u8>,
        /// EXAMINE.
        read_only: bool,
        /// The CONDSTORE select parameter (RFC 7162 §3.1.8).
        condstore: bool,
        /// The QRESYNC select parameter (RFC 7162 §3.2.5).
        qresync: Option<QresyncParams>,
    },
    /// CREATE mailbox [(USE (attrs))] (RFC 6154 §3)
    Create {
        /// The mailbox.
        mailbox: Vec<u8>,
        /// Special-use attributes asked for.
        special_use: Vec<String>,
    },
    /// DELETE mailbox
    Delete(Vec<u8>),
    /// RENAME from to
    Rename {
        /// Existing name.
        from: Vec<u8>,
        /// New name.
        to: Vec<u8>,
    },
    /// SUBSCRIBE mailbox
    Subscribe(Vec<u8>),
    /// UNSUBSCRIBE mailbox
    Unsubscribe(Vec<u8>),
    /// LIST, with RFC 5258 LIST-EXTENDED options.
    List(ListArgs),
    /// LSUB reference pattern
    Lsub {
        /// Reference name.
        reference: Vec<u8>,
        /// Pattern.
        pattern: Vec<u8>,
    },
    /// STATUS mailbox (items)
    Status {
        /// The mailbox.
        mailbox: Vec<u8>,
        /// The items.
        items: Vec<StatusItem>,
    },
    /// APPEND mailbox [flags] [date] literal, with one or more messages
    /// (RFC 3502 MULTIAPPEND).
    Append {
        /// The mailbox.
        mailbox: Vec<u8>,
        /// The messages, in the order sent (at least one).
        messages: Vec<AppendMessage>,
    },
    /// IDLE (RFC 2177)
    Idle,
    /// CHECK (RFC 3501 only; treated as NOOP)
    Check,
    /// CLOSE
    Close,
    /// UNSELECT (RFC 3691)
    Unselect,
    /// EXPUNGE, or UID EXPUNGE set (RFC 4315)
    Expunge {
        /// The UIDs of UID EXPUNGE.
        uids: Option<SequenceSet>,
    },
    /// [UID] SEARCH
    Search {
        /// UID SEARCH.
        uid: bool,
        /// RETURN options (ESEARCH, RFC 4731 / RFC 9051); None for the
        /// classic SEARCH response.
        ret: Option<Vec<SearchReturn>>,
        /// The search criteria (all must match).
        key: SearchKey,
    },
    /// [UID] SORT (RFC 5256 §3)
    Sort {
        /// UID SORT.
        uid: bool,
        /// The criteria, most significant first: (reverse, key).
        criteria: Vec<(bool, SortKey)>,
        /// The search criteria.
        key: SearchKey,
    },
    /// [UID] THREAD (RFC 5256 §3)
    Thread {
        /// UID THREAD.
        uid: bool,
        /// The threading algorithm.
        algorithm: ThreadAlgorithm,
        /// The search criteria.
        key: SearchKey,
    },
    /// [UID] FETCH
    Fetch {
        /// UID FETCH.
        uid: bool,
        /// Which messages.
        set: SequenceSet,
        /// What to fetch.
        items: Vec<FetchAttr>,
        /// CHANGEDSINCE modseq (RFC 7162 §3.1.4).
        changed_since: Option<u64>,
        /// VANISHED (RFC 7162 §3.2.6).
        vanished: bool,
    },
    /// [UID] STORE
    Store {
        /// UID STORE.
        uid: bool,
        /// Which messages.
        set: SequenceSet,
        /// UNCHANGEDSINCE modseq (RFC 7162 §3.1.3).
        unchanged_since: Option<u64>,
        /// Replace, add or remove.
        mode: StoreMode,
        /// `.SILENT`
        silent: bool,
        /// The flags.
        flags: Vec<String>,
    },
    /// [UID] COPY
    Copy {
        /// UID COPY.
        uid: bool,
        /// Which messages.
        set: SequenceSet,
        /// Target mailbox.
        mailbox: Vec<u8>,
    },
    /// [UID] MOVE (RFC 6851)
    Move {
        /// UID MOVE.
        uid: bool,
        /// Which messages.
        set: SequenceSet,
        /// Target mailbox.
        mailbox: Vec<u8>,
    },
    /// COMPRESS mechanism (RFC 4978), upper-cased.
    Compress(String),
    /// GETQUOTA root (RFC 9208)
    GetQuota(Vec<u8>),
    /// GETQUOTAROOT mailbox (RFC 9208)
    GetQuotaRoot(Vec<u8>),
}

impl CommandBody {
    /// The command's name, for the state table and for messages.
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Capability => "CAPABILITY",
            CommandBody::Noop => "NOOP",
            CommandBody::Logout => "LOGOUT",
            CommandBody::StartTls => "STARTTLS",
            CommandBody::Login { .. } => "LOGIN",
            CommandBody::Authenticate { .. } => "AUTHENTICATE",
            CommandBody::Enable(_) => "ENABLE",
            CommandBody::Id(_) => "ID",
            CommandBody::Namespace => "NAMESPACE",
            CommandBody::Select {
                read_only: false, ..
            } => "SELECT",
            CommandBody::Select {
                read_only: true, ..
            } => "EXAMINE",
            CommandBody::Create { .. } => "CREATE",
            CommandBody::Delete(_) => "DELETE",
            CommandBody::Rename { .. } => "RENAME",
            CommandBody::Subscribe(_) => "SUBSCRIBE",
            CommandBody::Unsubscribe(_) => "UNSUBSCRIBE",
            CommandBody::List(_) => "LIST",
            CommandBody::Lsub { .. } => "LSUB",
            CommandBody::Status { .. } => "STATUS",
            CommandBody::Append { .. } => "APPEND",
            CommandBody::Idle => "IDLE",
            CommandBody::Check => "CHECK",
            CommandBody::Close => "CLOSE",
            CommandBody::Unselect => "UNSELECT",
            CommandBody::Expunge { .. } => "EXPUNGE",
            CommandBody::Search { .. } => "SEARCH",
            CommandBody::Sort { .. } => "SORT",
            CommandBody::Thread { .. } => "THREAD",
            CommandBody::Fetch { .. } => "FETCH",
            CommandBody::Store { .. } => "STORE",
            CommandBody::Copy { .. } => "COPY",
            CommandBody::Move { .. } => "MOVE",
            CommandBody::Compress(_) => "COMPRESS",
            CommandBody::GetQuota(_) => "GETQUOTA",
            CommandBody::GetQuotaRoot(_) => "GETQUOTAROOT",
        }
    }
}

/// One message of an APPEND (RFC 9051 `append` / RFC 3502
/// `append-message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    /// Flags to set.
    pub flags: Vec<String>,
    /// INTERNALDATE, seconds since the epoch.
    pub date: Option<i64>,
    /// The message.
    pub message: Vec<u8>,
    /// Sent as `UTF8 (~{n}...)` (RFC 6855 §4): the message may hold
    /// UTF-8 header fields.
    pub utf8: bool,
}

/// QRESYNC select parameters: `(uidvalidity modseq [known-uids
/// [(seq-match-data)]])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QresyncParams {
    /// The UIDVALIDITY the client knows.
    pub uid_validity: u32,
    /// The last MODSEQ it knows.
    pub modseq: u64,
    /// The UIDs it knows.
    pub known_uids: Option<SequenceSet>,
}

/// LIST arguments (RFC 9051 §6.3.9 with RFC 5258 / RFC 5819 / RFC 6154).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListArgs {
    /// Selection options, upper-cased (`SUBSCRIBED`, `SPECIAL-USE`,
    /// `REMOTE`, `RECURSIVEMATCH`).
    pub select: Vec<String>,
    /// Reference name.
    pub reference: Vec<u8>,
    /// One or more patterns.
    pub patterns: Vec<Vec<u8>>,
    /// Return options, upper-cased (`SUBSCRIBED`, `CHILDREN`,
    /// `SPECIAL-USE`); STATUS items separately.
    pub ret: Vec<String>,
    /// `RETURN (STATUS (...))` (RFC 5819).
    pub status: Option<Vec<StatusItem>>,
    /// Whether the extended syntax was used (changes defaults).
    pub extended: bool,
}

/// A STATUS item (RFC 9051 §6.3.11, RFC 7162, RFC 8438 SIZE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    /// MESSAGES
    Messages,
    /// UIDNEXT
    UidNext,
    /// UIDVALIDITY
    UidValidity,
    /// UNSEEN
    Unseen,
    /// DELETED
    Deleted,
    /// SIZE
    Size,
    /// RECENT (RFC 3501)
    Recent,
    /// HIGHESTMODSEQ
    HighestModseq,
}

impl StatusItem {
    /// The item's name.
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::Recent => "RECENT",
            StatusItem::HighestModseq => "HIGHESTMODSEQ",
        }
    }
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// FLAGS
    Replace,
    /// +FLAGS
    Add,
    /// -FLAGS
    Remove,
}

/// A SORT key (RFC 5256 §3, RFC 5957 DISPLAYFROM / DISPLAYTO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// ARRIVAL: the internal date.
    Arrival,
    /// CC: the first Cc mailbox.
    Cc,
    /// DATE: the sent date.
    Date,
    /// FROM: the first From mailbox.
    From,
    /// SIZE
    Size,
    /// SUBJECT: the base subject.
    Subject,
    /// TO: the first To mailbox.
    To,
    /// DISPLAYFROM: the first From display name, else mailbox.
    DisplayFrom,
    /// DISPLAYTO: the first To display name, else mailbox.
    DisplayTo,
}

/// A THREAD algorithm (RFC 5256 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    /// ORDEREDSUBJECT
    OrderedSubject,
    /// REFERENCES
    References,
}

/// ESEARCH return options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    /// MIN
    Min,
    /// MAX
    Max,
    /// ALL
    All,
    /// COUNT
    Count,
    /// SAVE (RFC 5182): keep the result for `$`.
    Save,
}

/// A search key (RFC 9051 §6.4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    /// All of these (a parenthesised list, or the top level).
    And(Vec<SearchKey>),
    /// ALL
    All,
    /// A flag is set (ANSWERED, DELETED, DRAFT, FLAGGED, SEEN, KEYWORD).
    Flag(String),
    /// A flag is not set (UN...).
    NotFlag(String),
    /// NEW (RFC 3501: RECENT UNSEEN; without \Recent: UNSEEN).
    New,
    /// OLD (no message is recent here, so all).
    Old,
    /// RECENT (none here).
    Recent,
    /// A header field contains a string (FROM, TO, CC, BCC, SUBJECT,
    /// HEADER name).
    Header(String, Vec<u8>),
    /// BODY string
    Body(Vec<u8>),
    /// TEXT string
    Text(Vec<u8>),
    /// BEFORE / ON / SINCE date (internal date, by day), as days since
    /// the epoch.
    Date(DateOp, i64),
    /// SENTBEFORE / SENTON / SENTSINCE date (Date: header).
    SentDate(DateOp, i64),
    /// LARGER n
    Larger(u64),
    /// SMALLER n
    Smaller(u64),
    /// A sequence set.
    Seq(SequenceSet),
    /// UID set
    Uid(SequenceSet),
    /// NOT key
    Not(Box<SearchKey>),
    /// OR key key
    Or(Box<SearchKey>, Box<SearchKey>),
    /// MODSEQ n (RFC 7162 §3.1.5)
    Modseq(u64),
}

/// How a date compares in SEARCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOp {
    /// Earlier than the day.
    Before,
    /// On the day.
    On,
    /// On or after the day.
    Since,
}

/// A FETCH data item (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    /// ENVELOPE
    Envelope,
    /// FLAGS
    Flags,
    /// INTERNALDATE
    InternalDate,
    /// RFC822.SIZE
    Rfc822Size,
    /// RFC822 (= BODY[])
    Rfc822,
    /// RFC822.HEADER (= BODY.PEEK[HEADER])
    Rfc822Header,
    /// RFC822.TEXT (= BODY[TEXT])
    Rfc822Text,
    /// BODY (no section)
    Body,
    /// BODYSTRUCTURE
    BodyStructure,
    /// UID
    Uid,
    /// MODSEQ
    Modseq,
    /// BODY[section]<partial> / BODY.PEEK[...]
    Section {
        /// PEEK: do not set \Seen.
        peek: bool,
        /// The section.
        section: Section,
        /// `<origin.count>`
        partial: Option<(u64, u64)>,
    },
    /// BINARY[part]<partial> / BINARY.PEEK (RFC 3516)
    Binary {
        /// PEEK
        peek: bool,
        /// Part numbers.
        part: Vec<u32>,
        /// `<origin.count>`
        partial: Option<(u64, u64)>,
    },
    /// BINARY.SIZE[part]
    BinarySize(Vec<u32>),
}

/// A section spec: part numbers and what of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// Part numbers (`1.2` is `[1, 2]`).
    pub part: Vec<u32>,
    /// The text specifier, if any.
    pub text: Option<SectionSpec>,
}

/// The text part of a section spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionSpec {
    /// HEADER
    Header,
    /// HEADER.FIELDS (names) / HEADER.FIELDS.NOT (names)
    HeaderFields {
        /// `.NOT`
        not: bool,
        /// Field names as sent.
        fields: Vec<String>,
    },
    /// TEXT
    Text,
    /// MIME
    Mime,
}
