//! The system Sieve plugin (world `mailgate:policy/sieve-filter`): the host
//! calls `on-deliver.deliver` once per local account at delivery with that
//! account's active script; this plugin compiles it (cached by content
//! hash for as long as the instance lives), runs it with `mailgate-sieve`
//! against the message and returns the actions. It performs nothing: the
//! host files, flags, redirects, refuses and replies.
//!
//! Bounds: the interpreter's own limits (script size, nesting, actions,
//! redirects, includes, the step budget, linear-time regular expressions)
//! and, around the whole call, the host's wall time, memory and fuel.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use mailgate_sieve::{
    Action, BodyPart, DuplicateCheck, Envelope, Environment, HeaderEdit, Location, MessageData,
    Outcome, Script, Settings,
};

wit_bindgen::generate!({
    path: "../../wit",
    world: "mailgate:policy/sieve-filter",
});

use exports::mailgate::policy::metadata::{self, Hooks, PluginInfo};
use exports::mailgate::policy::on_deliver::{self as od, Failure, Request, Response};
use mailgate::policy::message::Message as HostMessage;

struct SieveFilter;

/// Compiled scripts kept by this instance, by a hash of the text and the
/// settings (the text itself is compared on a hit). Instances may be
/// recycled by the host at any time: this is only a cache.
struct Cached {
    text: String,
    settings: String,
    script: Script,
}

/// Most compiled scripts one instance keeps.
const MAX_CACHED: usize = 64;

thread_local! {
    static CACHE: RefCell<HashMap<u64, Cached>> = RefCell::new(HashMap::new());
}

fn content_hash(text: &str, settings: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    settings.hash(&mut h);
    h.finish()
}

/// Compiles `text`, or takes it from the cache.
fn compiled(text: &str, settings_json: &str, settings: &Settings) -> Result<Script, String> {
    let key = content_hash(text, settings_json);
    let hit = CACHE.with(|c| {
        c.borrow()
            .get(&key)
            .filter(|e| e.text == text && e.settings == settings_json)
            .map(|e| e.script.clone())
    });
    if let Some(s) = hit {
        return Ok(s);
    }
    let script = mailgate_sieve::compile(text, settings)
        .map_err(|e| format!("{}:{}: {}", e.line, e.column, e.message))?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_CACHED {
            c.clear();
        }
        c.insert(
            key,
            Cached {
                text: text.to_string(),
                settings: settings_json.to_string(),
                script: script.clone(),
            },
        );
    });
    Ok(script)
}

/// The message as the interpreter reads it: the header block at once, the
/// body only when a test asks for it.
struct Lent<'a> {
    host: &'a HostMessage,
    header: MessageData,
    whole: RefCell<Option<MessageData>>,
}

/// How much of the message is read per host call.
const CHUNK: u32 = 1 << 20;

impl<'a> Lent<'a> {
    fn new(host: &'a HostMessage) -> Lent<'a> {
        // Read until the empty line that ends the header (at most 1 MiB:
        // the host's limit on one header block is far below).
        let mut head = Vec::new();
        let mut start = 0u64;
        loop {
            let chunk = host.raw(start, 64 << 10);
            if chunk.is_empty() {
                break;
            }
            start += chunk.len() as u64;
            head.extend_from_slice(&chunk);
            if let Some(end) = find_header_end(&head) {
                head.truncate(end);
                break;
            }
            if head.len() >= CHUNK as usize {
                break;
            }
        }
        Lent {
            host,
            header: MessageData::new(head),
            whole: RefCell::new(None),
        }
    }

    fn whole(&self) -> MessageData {
        if let Some(m) = self.whole.borrow().as_ref() {
            return m.clone();
        }
        let mut raw = Vec::new();
        let mut start = 0u64;
        loop {
            let chunk = self.host.raw(start, CHUNK);
            if chunk.is_empty() {
                break;
            }
            start += chunk.len() as u64;
            raw.extend_from_slice(&chunk);
        }
        let m = MessageData::new(raw);
        *self.whole.borrow_mut() = Some(m.clone());
        m
    }
}

fn find_header_end(b: &[u8]) -> Option<usize> {
    if b.starts_with(b"\r\n") {
        return Some(2);
    }
    if b.starts_with(b"\n") {
        return Some(1);
    }
    if let Some(i) = b.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some(i + 4);
    }
    b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

impl mailgate_sieve::Message for Lent<'_> {
    fn headers(&self) -> Vec<(String, String)> {
        mailgate_sieve::Message::headers(&self.header)
    }
    fn size(&self) -> u64 {
        self.host.size()
    }
    fn raw_body(&self) -> String {
        mailgate_sieve::Message::raw_body(&self.whole())
    }
    fn body_parts(&self) -> Vec<BodyPart> {
        mailgate_sieve::Message::body_parts(&self.whole())
    }
}

/// What the host told us, answering the interpreter's questions.
struct Env<'a> {
    request: &'a Request,
}

/// The key of a `duplicate` record: handle and id, NUL-separated.
fn duplicate_key(check: &DuplicateCheck) -> String {
    format!("{}\u{0}{}", check.handle, check.id)
}

impl Environment for Env<'_> {
    fn now(&self) -> (i64, i32) {
        (self.request.now, self.request.zone)
    }
    fn script(&self, location: Location, name: &str) -> Option<String> {
        let list = match location {
            Location::Personal => &self.request.personal,
            Location::Global => &self.request.global,
        };
        list.iter().find(|s| s.name == name).map(|s| s.text.clone())
    }
    fn mailbox_exists(&self, name: &str) -> bool {
        self.request.mailboxes.iter().any(|m| {
            m == name || (m.eq_ignore_ascii_case("INBOX") && name.eq_ignore_ascii_case("INBOX"))
        })
    }
    fn seen_before(&self, check: &DuplicateCheck) -> bool {
        let key = duplicate_key(check);
        self.request.seen.contains(&key)
    }
}

impl metadata::Guest for SieveFilter {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sieve".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hooks: Hooks::empty(),
        }
    }
    fn self_test() -> Result<(), String> {
        mailgate_sieve::compile("keep;", &Settings::default())
            .map(|_| ())
            .map_err(|e| e.message)
    }
}

fn action(a: Action) -> od::Action {
    match a {
        Action::Keep { flags, .. } => od::Action::Keep(flags),
        Action::FileInto {
            mailbox,
            create,
            flags,
            ..
        } => od::Action::FileInto(od::FileInto {
            mailbox,
            create,
            flags,
        }),
        Action::Redirect { address, .. } => od::Action::Redirect(address),
        Action::Discard => od::Action::Discard,
        Action::Reject { reason, extended } => od::Action::Reject(od::Reject { reason, extended }),
        Action::Vacation(v) => od::Action::Vacation(od::Vacation {
            reason: v.reason,
            subject: v.subject,
            from: v.from,
            addresses: v.addresses,
            mime: v.mime,
            handle: v.handle,
            period: v.period,
        }),
    }
}

fn edit(e: HeaderEdit) -> od::Action {
    od::Action::EditHeader(match e {
        HeaderEdit::Add { name, value, last } => {
            od::HeaderEdit::Add(od::AddedHeader { name, value, last })
        }
        HeaderEdit::Delete { name, occurrence } => od::HeaderEdit::Delete(od::DeletedHeader {
            name,
            occurrence: u32::try_from(occurrence).unwrap_or(u32::MAX),
        }),
    })
}

/// The actions for the host, with the header edits among them where the
/// script made them: an action acts on the message with the edits listed
/// before it (RFC 5293 section 3).
fn actions(outcome: Outcome) -> Vec<od::Action> {
    let mut edits = outcome.header_edits.into_iter();
    let mut made = 0;
    let mut out = Vec::new();
    for (i, a) in outcome.actions.into_iter().enumerate() {
        let before = outcome.edits_before.get(i).copied().unwrap_or(made);
        while made < before {
            match edits.next() {
                Some(e) => out.push(edit(e)),
                None => break,
            }
            made += 1;
        }
        out.push(action(a));
    }
    out.extend(edits.map(edit));
    out
}

impl od::Guest for SieveFilter {
    fn deliver(request: Request, message: &HostMessage) -> Result<Response, Failure> {
        let settings: Settings = if request.settings.trim().is_empty() {
            Settings::default()
        } else {
            serde_json::from_str(&request.settings)
                .map_err(|e| Failure::Runtime(format!("bad settings from the host: {e}")))?
        };
        let script = compiled(&request.script.text, &request.settings, &settings)
            .map_err(Failure::Compile)?;
        let lent = Lent::new(message);
        let envelope = Envelope {
            from: request.envelope_from.clone(),
            to: request.envelope_to.clone(),
        };
        let env = Env { request: &request };
        let outcome = mailgate_sieve::execute(&script, &lent, &envelope, &env, &settings)
            .map_err(|e| Failure::Runtime(e.to_string()))?;
        let duplicates = outcome
            .duplicates
            .iter()
            .filter(|(check, seen)| !seen || check.last)
            .map(|(check, _)| od::Duplicate {
                key: duplicate_key(check),
                period: check.period,
                last: check.last,
            })
            .collect();
        let steps = outcome.steps;
        Ok(Response {
            actions: actions(outcome),
            // A new id is recorded; a seen one is refreshed only with `:last`.
            duplicates,
            steps,
        })
    }
}

export!(SieveFilter);
