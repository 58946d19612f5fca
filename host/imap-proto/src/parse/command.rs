//! Parsing of whole commands (RFC 9051 §9 `command-*` rules, plus the
//! extensions' additions, quoted above each branch).

use super::{Cursor, ParseError, R};
use crate::command::*;

/// Parses one framed command (see [`crate::Framer`]).
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    let mut c = Cursor::new(input);
    let tag = c.take_while(super::is_tag_char);
    if tag.is_empty() || tag.len() > 64 {
        return Err(ParseError {
            tag: None,
            message: "missing or invalid tag".into(),
        });
    }
    let tag = String::from_utf8_lossy(tag).into_owned();
    let body = (|| {
        c.sp()?;
        let body = body(&mut c)?;
        c.end()?;
        Ok(body)
    })();
    match body {
        Ok(body) => Ok(Command { tag, body }),
        Err(message) => Err(ParseError {
            tag: Some(tag),
            message,
        }),
    }
}

fn body(c: &mut Cursor<'_>) -> R<CommandBody> {
    let name = c.keyword("a command name")?;
    Ok(match name.as_str() {
        "CAPABILITY" => CommandBody::Capability,
        "NOOP" => CommandBody::Noop,
        "LOGOUT" => CommandBody::Logout,
        "STARTTLS" => CommandBody::StartTls,
        "NAMESPACE" => CommandBody::Namespace,
        "IDLE" => CommandBody::Idle,
        "CHECK" => CommandBody::Check,
        "CLOSE" => CommandBody::Close,
        "UNSELECT" => CommandBody::Unselect,
        "EXPUNGE" => CommandBody::Expunge { uids: None },
        // login = "LOGIN" SP userid SP password
        "LOGIN" => {
            c.sp()?;
            let user = c.astring("a user name")?;
            c.sp()?;
            let password = c.astring("a password")?;
            CommandBody::Login { user, password }
        }
        // authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp]
        // initial-resp = (base64 / "=")                  (RFC 4959)
        "AUTHENTICATE" => {
            c.sp()?;
            let mechanism = c.keyword("a SASL mechanism")?;
            let initial = if c.eat(b' ') {
                let r =
                    c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                if r.is_empty() {
                    return Err("expected an initial response".into());
                }
                Some(String::from_utf8_lossy(r).into_owned())
            } else {
                None
            };
            CommandBody::Authenticate { mechanism, initial }
        }
        // enable = "ENABLE" 1*(SP capability)               (RFC 5161)
        "ENABLE" => {
            let mut caps = Vec::new();
            while c.eat(b' ') {
                caps.push(c.keyword("a capability")?);
            }
            if caps.is_empty() {
                return Err("ENABLE needs a capability".into());
            }
            CommandBody::Enable(caps)
        }
        // id = "ID" SP id-params-list
        // id-params-list = "(" *(string SP nstring) ")" / nil  (RFC 2971)
        "ID" => {
            c.sp()?;
            if c.eat_word("NIL") {
                CommandBody::Id(None)
            } else {
                c.expect(b'(', "'(' or NIL")?;
                let mut params = Vec::new();
                if !c.eat(b')') {
                    loop {
                        let k = c.string("a field name")?;
                        c.sp()?;
                        let v = c.nstring("a field value")?;
                        if params.len() < 30 {
                            params.push((k, v));
                        }
                        if c.eat(b')') {
                            break;
                        }
                        c.sp()?;
                    }
                }
                CommandBody::Id(Some(params))
            }
        }
        "SELECT" | "EXAMINE" => select(c, name == "EXAMINE")?,
        // create = "CREATE" SP mailbox [create-params]
        // create-param =/ "USE" SP "(" [use-attr *(SP use-attr)] ")" (RFC 6154)
        "CREATE" => {
            c.sp()?;
            let mailbox = c.mailbox()?;
            let mut special_use = Vec::new();
            if c.eat(b' ') {
                c.expect(b'(', "'('")?;
                loop {
                    let p = c.keyword("a CREATE parameter")?;
                    if p != "USE" {
                        return Err(format!("unknown CREATE parameter {p}"));
                    }
                    c.sp()?;
                    special_use.extend(c.flag_list()?);
                    if c.eat(b')') {
                        break;
                    }
                    c.sp()?;
                }
            }
            CommandBody::Create {
                mailbox,
                special_use,
            }
        }
        "DELETE" => {
            c.sp()?;
            CommandBody::Delete(c.mailbox()?)
        }
        "RENAME" => {
            c.sp()?;
            let from = c.mailbox()?;
            c.sp()?;
            let to = c.mailbox()?;
            CommandBody::Rename { from, to }
        }
        "SUBSCRIBE" => {
            c.sp()?;
            CommandBody::Subscribe(c.mailbox()?)
        }
        "UNSUBSCRIBE" => {
            c.sp()?;
            CommandBody::Unsubscribe(c.mailbox()?)
        }
        "LIST" => list(c)?,
        // lsub = "LSUB" SP mailbox SP list-mailbox
        "LSUB" => {
            c.sp()?;
            let reference = c.mailbox()?;
            c.sp()?;
            let pattern = c.list_mailbox()?;
            CommandBody::Lsub { reference, pattern }
        }
        // status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"
        "STATUS" => {
            c.sp()?;
            let mailbox = c.mailbox()?;
            c.sp()?;
            let items = c.paren_list(status_item)?;
            CommandBody::Status { mailbox, items }
        }
        "APPEND" => append(c)?,
        "SEARCH" => super::search::search(c, false)?,
        "SORT" => super::search::sort(c, false)?,
        "THREAD" => super::search::thread(c, false)?,
        "FETCH" => fetch(c, false)?,
        "STORE" => store(c, false)?,
        "COPY" | "MOVE" => copy(c, false, name == "MOVE")?,
        // uid = "UID" SP (copy / move / fetch / search / store / uid-expunge)
        "UID" => {
            c.sp()?;
            let sub = c.keyword("a UID command")?;
            match sub.as_str() {
                "FETCH" => fetch(c, true)?,
                "STORE" => store(c, true)?,
                "SEARCH" => super::search::search(c, true)?,
                "SORT" => super::search::sort(c, true)?,
                "THREAD" => super::search::thread(c, true)?,
                "COPY" | "MOVE" => copy(c, true, sub == "MOVE")?,
                // uid-expunge = "EXPUNGE" SP sequence-set   (RFC 4315)
                "EXPUNGE" => {
                    c.sp()?;
                    CommandBody::Expunge {
                        uids: Some(c.sequence_set()?),
                    }
                }
                _ => return Err(format!("unknown UID command {sub}")),
            }
        }
        // compress = "COMPRESS" SP algorithm                (RFC 4978)
        "COMPRESS" => {
            c.sp()?;
            CommandBody::Compress(c.keyword("a compression algorithm")?)
        }
        // getquota = "GETQUOTA" SP quota-root-name         (RFC 9208)
        "GETQUOTA" => {
            c.sp()?;
            CommandBody::GetQuota(c.astring("a quota root")?)
        }
        "GETQUOTAROOT" => {
            c.sp()?;
            CommandBody::GetQuotaRoot(c.mailbox()?)
        }
        _ => return Err(format!("unknown command {name}")),
    })
}

/// ```abnf
/// select          = "SELECT" SP mailbox [select-params]
/// select-params   = SP "(" select-param *(SP select-param) ")"
/// select-param    =/ "CONDSTORE"                                  ; RFC 7162
/// select-param    =/ "QRESYNC" SP "(" uidvalidity SP mod-sequence-value
///                    [SP known-uids] [SP seq-match-data] ")"      ; RFC 7162
/// ```
fn select(c: &mut Cursor<'_>, read_only: bool) -> R<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    let (mut condstore, mut qresync) = (false, None);
    if c.eat(b' ') {
        c.expect(b'(', "'('")?;
        loop {
            let p = c.keyword("a select parameter")?;
            match p.as_str() {
                "CONDSTORE" => condstore = true,
                "QRESYNC" => {
                    c.sp()?;
                    c.expect(b'(', "'('")?;
                    let uid_validity = c.nz_number32("a UIDVALIDITY")?;
                    c.sp()?;
                    let modseq = c.number("a mod-sequence")?;
                    let mut known_uids = None;
                    if c.eat(b' ') {
                        if c.peek() == Some(b'(') {
                            skip_parens(c)?;
                        } else {
                            known_uids = Some(c.sequence_set()?);
                            if c.eat(b' ') {
                                skip_parens(c)?;
                            }
                        }
                    }
                    c.expect(b')', "')'")?;
                    qresync = Some(QresyncParams {
                        uid_validity,
                        modseq,
                        known_uids,
                    });
                }
                _ => return Err(format!("unknown select parameter {p}")),
            }
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    }
    Ok(CommandBody::Select {
        mailbox,
        read_only,
        condstore,
        qresync,
    })
}

/// Skips a parenthesised group of plain tokens (seq-match-data, which
/// mailgate does not need: it answers from the store's expunge history).
fn skip_parens(c: &mut Cursor<'_>) -> R<()> {
    c.expect(b'(', "'('")?;
    c.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*' | b' '));
    c.expect(b')', "')'")
}

/// ```abnf
/// list            = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
///                   [SP list-return-opts]                       ; RFC 5258
/// mbox-or-pat     = list-mailbox / patterns
/// patterns        = "(" list-mailbox *(SP list-mailbox) ")"
/// list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"
/// return-option   =/ "STATUS" SP "(" status-att *(SP status-att) ")" ; RFC 5819
/// ```
fn list(c: &mut Cursor<'_>) -> R<CommandBody> {
    let mut args = ListArgs::default();
    c.sp()?;
    if c.eat(b'(') {
        args.extended = true;
        if !c.eat(b')') {
            loop {
                args.select.push(c.keyword("a selection option")?);
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
        }
        c.sp()?;
    }
    args.reference = c.mailbox()?;
    c.sp()?;
    if c.peek() == Some(b'(') {
        args.extended = true;
        args.patterns = c.paren_list(|c| c.list_mailbox())?;
    } else {
        args.patterns.push(c.list_mailbox()?);
    }
    if c.eat(b' ') {
        args.extended = true;
        if !c.eat_word("RETURN") {
            return Err("expected RETURN".into());
        }
        c.sp()?;
        c.expect(b'(', "'('")?;
        if !c.eat(b')') {
            loop {
                let opt = c.keyword("a return option")?;
                if opt == "STATUS" {
                    c.sp()?;
                    args.status = Some(c.paren_list(status_item)?);
                } else {
                    args.ret.push(opt);
                }
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
        }
    }
    Ok(CommandBody::List(args))
}

/// `status-att = "MESSAGES" / "UIDNEXT" / "UIDVALIDITY" / "UNSEEN" /
/// "DELETED" / "SIZE"` (+ RECENT of RFC 3501, HIGHESTMODSEQ of RFC 7162)
fn status_item(c: &mut Cursor<'_>) -> R<StatusItem> {
    let k = c.keyword("a status item")?;
    Ok(match k.as_str() {
        "MESSAGES" => StatusItem::Messages,
        "UIDNEXT" => StatusItem::UidNext,
        "UIDVALIDITY" => StatusItem::UidValidity,
        "UNSEEN" => StatusItem::Unseen,
        "DELETED" => StatusItem::Deleted,
        "SIZE" => StatusItem::Size,
        "RECENT" => StatusItem::Recent,
        "HIGHESTMODSEQ" => StatusItem::HighestModseq,
        _ => return Err(format!("unknown status item {k}")),
    })
}

/// ```abnf
/// append          = "APPEND" SP mailbox 1*append-message      ; RFC 3502
/// append-message  = append-opts SP append-data
/// append-opts     = [SP flag-list] [SP date-time]
/// append-data     = literal / literal8                        ; RFC 3516
/// append-data     =/ "UTF8" SP "(" literal8 ")"               ; RFC 6855
/// ```
///
/// At most [`MAX_APPEND_MESSAGES`] messages per command.
fn append(c: &mut Cursor<'_>) -> R<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    let mut messages = Vec::new();
    while c.eat(b' ') {
        if messages.len() >= MAX_APPEND_MESSAGES {
            return Err("too many messages in one APPEND".into());
        }
        let mut flags = Vec::new();
        let mut date = None;
        if c.peek() == Some(b'(') {
            flags = c.flag_list()?;
            c.sp()?;
        }
        if c.peek() == Some(b'"') {
            let d = c.quoted()?;
            let d = std::str::from_utf8(&d).map_err(|_| "invalid date-time".to_string())?;
            date = Some(super::parse_date_time(d).ok_or("invalid date-time")?);
            c.sp()?;
        }
        let utf8 = c.eat_word("UTF8");
        let message = if utf8 {
            c.sp()?;
            c.expect(b'(', "'('")?;
            if c.peek() != Some(b'~') {
                return Err("UTF8 needs a literal8 (~{n})".into());
            }
            let m = c.literal()?.to_vec();
            c.expect(b')', "')'")?;
            m
        } else {
            c.literal()?.to_vec()
        };
        messages.push(AppendMessage {
            flags,
            date,
            message,
            utf8,
        });
    }
    if messages.is_empty() {
        return Err("expected a message".into());
    }
    Ok(CommandBody::Append { mailbox, messages })
}

/// The most messages one APPEND (MULTIAPPEND) may carry.
pub const MAX_APPEND_MESSAGES: usize = 1000;

/// ```abnf
/// fetch           = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" /
///                   fetch-att / "(" fetch-att *(SP fetch-att) ")")
///                   [fetch-modifiers]                          ; RFC 7162
/// fetch-modifier  = "CHANGEDSINCE" SP mod-sequence / "VANISHED"
/// ```
fn fetch(c: &mut Cursor<'_>, uid: bool) -> R<CommandBody> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let items = super::fetch::items(c)?;
    let (mut changed_since, mut vanished) = (None, false);
    if c.eat(b' ') {
        c.expect(b'(', "'('")?;
        loop {
            let m = c.keyword("a fetch modifier")?;
            match m.as_str() {
                "CHANGEDSINCE" => {
                    c.sp()?;
                    changed_since = Some(c.number("a mod-sequence")?);
                }
                "VANISHED" => vanished = true,
                _ => return Err(format!("unknown fetch modifier {m}")),
            }
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    }
    Ok(CommandBody::Fetch {
        uid,
        set,
        items,
        changed_since,
        vanished,
    })
}

/// ```abnf
/// store           = "STORE" SP sequence-set [store-modifiers] SP
///                   store-att-flags
/// store-modifier  = "UNCHANGEDSINCE" SP mod-sequence-valzer   ; RFC 7162
/// store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP
///                   (flag-list / (flag *(SP flag)))
/// ```
fn store(c: &mut Cursor<'_>, uid: bool) -> R<CommandBody> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mut unchanged_since = None;
    if c.eat(b'(') {
        if !c.eat_word("UNCHANGEDSINCE") {
            return Err("unknown store modifier".into());
        }
        c.sp()?;
        unchanged_since = Some(c.number("a mod-sequence")?);
        c.expect(b')', "')'")?;
        c.sp()?;
    }
    let mode = if c.eat(b'+') {
        StoreMode::Add
    } else if c.eat(b'-') {
        StoreMode::Remove
    } else {
        StoreMode::Replace
    };
    let item = c.keyword("FLAGS")?;
    let silent = match item.as_str() {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        _ => return Err(format!("unknown store item {item}")),
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        c.flag_list()?
    } else {
        let mut flags = vec![c.flag()?];
        while c.eat(b' ') {
            flags.push(c.flag()?);
        }
        flags
    };
    Ok(CommandBody::Store {
        uid,
        set,
        unchanged_since,
        mode,
        silent,
        flags,
    })
}

/// `copy = "COPY" SP sequence-set SP mailbox`, `move = "MOVE" SP
/// sequence-set SP mailbox` (RFC 6851)
fn copy(c: &mut Cursor<'_>, uid: bool, is_move: bool) -> R<CommandBody> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mailbox = c.mailbox()?;
    Ok(if is_move {
        CommandBody::Move { uid, set, mailbox }
    } else {
        CommandBody::Copy { uid, set, mailbox }
    })
}
