//! compile() and execute() never panic, whatever the input: random bytes,
//! random token soup and mutations of valid scripts (a deterministic
//! generator, so a failure repeats). The same body is the `sieve_compile`
//! fuzz target's idea, run here as an ordinary fast test.

mod common;

use common::*;
use mailgate_sieve::{compile_bytes, execute, MessageData, Settings};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "require [\"fileinto\", \"variables\", \"regex\", \"imap4flags\"]; if header :matches \"subject\" \"*[*]*\" { fileinto \"a/${1}\"; addflag \"\\\\Seen\"; } elsif header :regex \"from\" \"^b(o+)b\" { discard; } else { keep; }",
    "require [\"vacation-seconds\", \"relational\", \"comparator-i;ascii-numeric\"]; if header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"5\" { vacation :seconds 60 :subject \"s\" text:\nAway\n..\n.\n; }",
    "require [\"date\", \"index\", \"body\", \"envelope\", \"subaddress\"]; if allof(date :zone \"+0100\" :index 1 \"date\" \"year\" \"2005\", body :raw :contains \"x\", envelope :detail \"to\" \"sieve\", not exists \"x\") { stop; }",
    "require [\"include\", \"variables\", \"duplicate\", \"mailbox\", \"copy\", \"encoded-character\"]; global \"g\"; set :upper :length \"g\" \"${hex:41}\"; include :optional :once \"x\"; if duplicate :seconds 10 { redirect :copy \"a@b.c\"; } if mailboxexists \"x\" { return; }",
];

const WORDS: &[&str] = &[
    "if",
    "elsif",
    "else",
    "require",
    "keep",
    "discard",
    "stop",
    "fileinto",
    "redirect",
    "header",
    "address",
    "envelope",
    "allof",
    "anyof",
    "not",
    "true",
    "false",
    "size",
    "set",
    "string",
    ":is",
    ":matches",
    ":regex",
    ":count",
    ":value",
    ":over",
    ":index",
    ":last",
    ":comparator",
    "\"i;ascii-numeric\"",
    "\"variables\"",
    "\"${1}\"",
    "\"${hex:zz}\"",
    "\"*?\\\\\"",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ";",
    "1K",
    "99999999999G",
    "text:\n",
    ".\n",
    "#",
    "/*",
    "*/",
    "\"",
];

fn check(input: &[u8]) {
    let settings = Settings {
        editheader: true,
        max_cpu_steps: 20_000,
        ..Settings::default()
    };
    if let Ok(script) = compile_bytes(input, &settings) {
        let _ = execute(
            &script,
            &MessageData::new(MESSAGE),
            &envelope(),
            &TestEnv::default(),
            &settings,
        );
    }
}

#[test]
fn random_bytes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3_000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&bytes);
    }
}

#[test]
fn token_soup() {
    let mut rng = Rng(12345);
    for _ in 0..5_000 {
        let n = rng.below(40);
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(WORDS[rng.below(WORDS.len())]);
            s.push(if rng.below(4) == 0 { '\n' } else { ' ' });
        }
        check(s.as_bytes());
    }
}

#[test]
fn mutated_scripts() {
    let mut rng = Rng(777);
    for seed in SEEDS {
        check(seed.as_bytes());
        for _ in 0..2_000 {
            let mut b = seed.as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                if b.is_empty() {
                    break;
                }
                let i = rng.below(b.len());
                match rng.below(4) {
                    0 => b[i] = rng.next() as u8,
                    1 => {
                        b.remove(i);
                    }
                    2 => b.insert(i, b"{}()[];:\"\\$*?"[rng.below(13)]),
                    _ => b.truncate(i),
                }
            }
            check(&b);
        }
    }
}
