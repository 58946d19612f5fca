//! The compiled form: typed commands and tests, every argument checked.
//!
//! Strings are kept as written (encoded characters already decoded);
//! `${...}` references are expanded at run time when the script requires
//! `variables`.

/// `:comparator` (RFC 5228 section 2.7.3, RFC 4790).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// `i;octet`: byte for byte.
    Octet,
    /// `i;ascii-casemap` (the default): ASCII letters without case.
    AsciiCasemap,
    /// `i;ascii-numeric`: leading digits as a number; no digits is infinity.
    AsciiNumeric,
}

/// A relational operator (RFC 5231).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
    /// `eq`
    Eq,
    /// `ne`
    Ne,
}

/// The match type of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    /// `:is` (the default).
    Is,
    /// `:contains`.
    Contains,
    /// `:matches`: `*` and `?` wildcards, `\` escapes.
    Matches,
    /// `:regex` (draft-murchison-sieve-regex): POSIX-like extended syntax,
    /// run by a linear-time engine.
    Regex,
    /// `:count` (RFC 5231).
    Count(Relation),
    /// `:value` (RFC 5231).
    Value(Relation),
}

/// Comparator and match type together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matcher {
    /// The comparator.
    pub comparator: Comparator,
    /// The match type.
    pub match_type: MatchType,
}

/// Which part of an address a test looks at (RFC 5228 2.7.4, RFC 5233).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    /// `:all` (the default): `local@domain`.
    All,
    /// `:localpart`.
    LocalPart,
    /// `:domain`.
    Domain,
    /// `:user`: the local part before the separator.
    User,
    /// `:detail`: the local part after the separator.
    Detail,
}

/// `:index N [:last]` (RFC 5260 section 6): which occurrence of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    /// From 1.
    pub n: u64,
    /// Count from the last occurrence.
    pub last: bool,
}

/// The time zone of a date test (RFC 5260).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The server's local zone (the environment's offset).
    Local,
    /// `:originalzone`: the zone written in the header.
    Original,
    /// `:zone "+hhmm"`: offset in minutes.
    Fixed(i32),
}

/// The body transform (RFC 5173).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTransform {
    /// `:raw`: the undecoded body.
    Raw,
    /// `:text` (the default): the decoded text parts.
    Text,
    /// `:content`: the decoded parts of these content types.
    Content(Vec<String>),
}

/// A `set` modifier (RFC 5229 section 4.1, regex draft `:quoteregex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Modifier {
    /// `:length` (precedence 10).
    Length,
    /// `:quotewildcard` (20).
    QuoteWildcard,
    /// `:quoteregex` (20).
    QuoteRegex,
    /// `:lowerfirst` (30).
    LowerFirst,
    /// `:upperfirst` (30).
    UpperFirst,
    /// `:lower` (40).
    Lower,
    /// `:upper` (40).
    Upper,
}

impl Modifier {
    /// RFC 5229 precedence: higher is applied first.
    pub fn precedence(self) -> u8 {
        match self {
            Modifier::Length => 10,
            Modifier::QuoteWildcard | Modifier::QuoteRegex => 20,
            Modifier::LowerFirst | Modifier::UpperFirst => 30,
            Modifier::Lower | Modifier::Upper => 40,
        }
    }
}

/// What `duplicate` identifies the message by (RFC 7352).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuplicateId {
    /// A header's value (`Message-ID` by default).
    Header(String),
    /// `:uniqueid`.
    UniqueId(String),
}

/// A test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// `true`
    True,
    /// `false`
    False,
    /// `not`
    Not(Box<Test>),
    /// `allof`
    AllOf(Vec<Test>),
    /// `anyof`
    AnyOf(Vec<Test>),
    /// `address`
    Address {
        /// Comparator and match type.
        matcher: Matcher,
        /// Address part.
        part: AddressPart,
        /// Header names.
        headers: Vec<String>,
        /// Keys.
        keys: Vec<String>,
        /// `:index`.
        index: Option<Index>,
    },
    /// `envelope`
    Envelope {
        /// Comparator and match type.
        matcher: Matcher,
        /// Address part.
        part: AddressPart,
        /// `from` / `to`.
        fields: Vec<String>,
        /// Keys.
        keys: Vec<String>,
    },
    /// `header`
    Header {
        /// Comparator and match type.
        matcher: Matcher,
        /// Header names.
        headers: Vec<String>,
        /// Keys.
        keys: Vec<String>,
        /// `:index`.
        index: Option<Index>,
    },
    /// `exists`
    Exists(Vec<String>),
    /// `size :over` (true) / `:under` (false).
    Size {
        /// `:over`.
        over: bool,
        /// The limit in bytes.
        limit: u64,
    },
    /// `body`
    Body {
        /// Comparator and match type.
        matcher: Matcher,
        /// Transform.
        transform: BodyTransform,
        /// Keys.
        keys: Vec<String>,
    },
    /// `string` (RFC 5229).
    String {
        /// Comparator and match type.
        matcher: Matcher,
        /// Source strings.
        sources: Vec<String>,
        /// Keys.
        keys: Vec<String>,
    },
    /// `hasflag` (RFC 5232).
    HasFlag {
        /// Comparator and match type.
        matcher: Matcher,
        /// Variables holding flags; empty is the internal variable.
        variables: Vec<String>,
        /// Flags.
        flags: Vec<String>,
    },
    /// `date` (RFC 5260).
    Date {
        /// Comparator and match type.
        matcher: Matcher,
        /// Zone.
        zone: Zone,
        /// `:index`.
        index: Option<Index>,
        /// The header holding the date.
        header: String,
        /// The date part.
        part: String,
        /// Keys.
        keys: Vec<String>,
    },
    /// `currentdate` (RFC 5260).
    CurrentDate {
        /// Comparator and match type.
        matcher: Matcher,
        /// Zone (never `Original`).
        zone: Zone,
        /// The date part.
        part: String,
        /// Keys.
        keys: Vec<String>,
    },
    /// `mailboxexists` (RFC 5490).
    MailboxExists(Vec<String>),
    /// `duplicate` (RFC 7352).
    Duplicate {
        /// `:handle`.
        handle: Option<String>,
        /// What identifies the message.
        id: DuplicateId,
        /// `:seconds`.
        seconds: Option<u64>,
        /// `:last`.
        last: bool,
    },
}

/// `vacation` arguments (RFC 5230, RFC 6131).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacationArgs {
    /// `:days` converted to seconds, or `:seconds`.
    pub period: Option<u64>,
    /// `:subject`.
    pub subject: Option<String>,
    /// `:from`.
    pub from: Option<String>,
    /// `:addresses`.
    pub addresses: Vec<String>,
    /// `:mime`.
    pub mime: bool,
    /// `:handle`.
    pub handle: Option<String>,
    /// The reason (the reply's body).
    pub reason: String,
}

/// Which flag command (RFC 5232).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `setflag`
    Set,
    /// `addflag`
    Add,
    /// `removeflag`
    Remove,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `if`/`elsif`/`else`: the branches in order, then the `else` block.
    If(Vec<(Test, Vec<Command>)>, Option<Vec<Command>>),
    /// `stop`
    Stop,
    /// `keep [:flags]`
    Keep {
        /// `:flags`.
        flags: Option<Vec<String>>,
    },
    /// `discard`
    Discard,
    /// `redirect [:copy]`
    Redirect {
        /// The address.
        address: String,
        /// `:copy`.
        copy: bool,
    },
    /// `fileinto [:copy] [:create] [:flags]`
    FileInto {
        /// The folder.
        mailbox: String,
        /// `:copy`.
        copy: bool,
        /// `:create`.
        create: bool,
        /// `:flags`.
        flags: Option<Vec<String>>,
    },
    /// `reject` / `ereject`
    Reject {
        /// The reason.
        reason: String,
        /// `ereject`.
        extended: bool,
    },
    /// `vacation`
    Vacation(Box<VacationArgs>),
    /// `setflag` / `addflag` / `removeflag`
    Flags {
        /// Which.
        op: FlagOp,
        /// The variable, or the internal one.
        variable: Option<String>,
        /// Flags.
        flags: Vec<String>,
    },
    /// `set`
    Set {
        /// Variable name (lowercased).
        name: String,
        /// Value.
        value: String,
        /// Modifiers, highest precedence first.
        modifiers: Vec<Modifier>,
    },
    /// `include`
    Include {
        /// The script's name.
        name: String,
        /// `:global` (else `:personal`).
        global: bool,
        /// `:once`.
        once: bool,
        /// `:optional`.
        optional: bool,
    },
    /// `return`
    Return,
    /// `global`
    Global(Vec<String>),
    /// `addheader [:last]`
    AddHeader {
        /// `:last`.
        last: bool,
        /// Field name.
        name: String,
        /// Value.
        value: String,
    },
    /// `deleteheader`
    DeleteHeader {
        /// `:index`.
        index: Option<Index>,
        /// Comparator and match type.
        matcher: Matcher,
        /// Field name.
        name: String,
        /// Value patterns; none deletes every occurrence.
        patterns: Option<Vec<String>>,
    },
}
