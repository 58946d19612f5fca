//! Shared pieces of the conformance tests: a host that answers from
//! memory, a sample message, and a one-line summary of each action so
//! that expected outcomes read as a list.
#![allow(dead_code)]

use std::collections::HashMap;

use mailgate_sieve::{
    compile, execute, Action, DuplicateCheck, Envelope, Environment, Location, MessageData,
    Outcome, RuntimeError, Settings,
};

/// A host held in memory.
#[derive(Default)]
pub struct TestEnv {
    pub personal: HashMap<String, String>,
    pub global: HashMap<String, String>,
    pub mailboxes: Vec<String>,
    /// Ids `seen_before` answers yes for.
    pub seen: Vec<String>,
    pub now: (i64, i32),
}

impl Environment for TestEnv {
    fn now(&self) -> (i64, i32) {
        self.now
    }
    fn script(&self, location: Location, name: &str) -> Option<String> {
        match location {
            Location::Personal => self.personal.get(name).cloned(),
            Location::Global => self.global.get(name).cloned(),
        }
    }
    fn mailbox_exists(&self, name: &str) -> bool {
        self.mailboxes.iter().any(|m| m == name)
    }
    fn seen_before(&self, check: &DuplicateCheck) -> bool {
        self.seen
            .contains(&format!("{}|{}", check.handle, check.id))
    }
}

pub const MESSAGE: &str = "Return-Path: <bob@example.net>\r\n\
From: Bob Smith <bob+lists@example.net>\r\n\
To: Alice <alice@example.org>, carol@example.com\r\n\
Cc: dave@example.org\r\n\
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= [acme-users] hello\r\n\
Date: Sun, 14 Aug 2005 12:30:05 -0700\r\n\
Message-ID: <1234@example.net>\r\n\
X-Spam-Score: 7\r\n\
X-Spam-Score: 12\r\n\
List-Id: Acme users <acme-users.lists.example.net>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello Alice,\r\n\
this is the body with the SECRET word.\r\n";

pub fn envelope() -> Envelope {
    Envelope {
        from: "bob+lists@example.net".into(),
        to: "alice+sieve@example.org".into(),
    }
}

/// Runs `script` on the sample message with the defaults.
pub fn run(script: &str) -> Result<Outcome, RuntimeError> {
    run_full(script, MESSAGE, &TestEnv::default(), &Settings::default())
}

pub fn run_full(
    script: &str,
    msg: &str,
    env: &TestEnv,
    settings: &Settings,
) -> Result<Outcome, RuntimeError> {
    let s = compile(script, settings).unwrap_or_else(|e| panic!("{script}\n{e}"));
    execute(&s, &MessageData::new(msg), &envelope(), env, settings)
}

/// The actions as short lines.
pub fn summary(o: &Outcome) -> Vec<String> {
    o.actions.iter().map(line).collect()
}

fn flags(f: &[String]) -> String {
    if f.is_empty() {
        String::new()
    } else {
        format!(" flags={}", f.join(","))
    }
}

fn line(a: &Action) -> String {
    match a {
        Action::Keep { flags: f, implicit } => {
            format!(
                "{}{}",
                if *implicit { "implicit-keep" } else { "keep" },
                flags(f)
            )
        }
        Action::FileInto {
            mailbox,
            create,
            flags: f,
            copy,
        } => format!(
            "fileinto {mailbox}{}{}{}",
            if *create { " :create" } else { "" },
            if *copy { " :copy" } else { "" },
            flags(f)
        ),
        Action::Redirect { address, copy } => {
            format!("redirect {address}{}", if *copy { " :copy" } else { "" })
        }
        Action::Discard => "discard".into(),
        Action::Reject { reason, extended } => {
            format!("{} {reason}", if *extended { "ereject" } else { "reject" })
        }
        Action::Vacation(v) => format!(
            "vacation period={} subject={} from={} reason={}",
            v.period,
            v.subject.as_deref().unwrap_or("-"),
            v.from.as_deref().unwrap_or("-"),
            v.reason
        ),
    }
}

/// Asserts that each (script, expected actions) pair holds on the sample.
pub fn table(cases: &[(&str, &[&str])]) {
    for (script, want) in cases {
        let got = run(script).unwrap_or_else(|e| panic!("{script}\nruntime error: {e}"));
        assert_eq!(summary(&got), *want, "script:\n{script}");
    }
}
