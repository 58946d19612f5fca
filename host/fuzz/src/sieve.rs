//! The Sieve target: the compiler and, for what compiles, a run on a
//! fixed message.

use mailgate_sieve::{
    compile_bytes, execute, Action, Envelope, MessageData, NoEnvironment, Settings,
};

const MESSAGE: &str = "From: Bob <bob+x@example.net>\r\nTo: alice@example.org\r\n\
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= [list] hi\r\nDate: Sun, 14 Aug 2005 12:30:05 -0700\r\n\
Message-ID: <1@example.net>\r\nX-Score: 7\r\n\r\nHello, body.\r\n";

/// `sieve_compile`: compile() never panics; an error's line and column
/// fall inside the script; a script that compiles runs without panicking
/// on a fixed message, within the step budget and the action and
/// redirect limits.
pub fn compile(data: &[u8]) {
    let settings = Settings {
        editheader: true,
        max_cpu_steps: 100_000,
        ..Settings::default()
    };
    match compile_bytes(data, &settings) {
        Err(e) => {
            let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
            assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
            assert!(e.column >= 1);
            assert!(!e.message.is_empty());
        }
        Ok(script) => {
            let envelope = Envelope {
                from: "bob+x@example.net".into(),
                to: "alice@example.org".into(),
            };
            let msg = MessageData::new(MESSAGE);
            if let Ok(outcome) = execute(&script, &msg, &envelope, &NoEnvironment, &settings) {
                assert!(outcome.steps <= settings.max_cpu_steps);
                let redirects = outcome
                    .actions
                    .iter()
                    .filter(|a| matches!(a, Action::Redirect { .. }))
                    .count();
                assert!(redirects <= settings.max_redirects);
                // Every action but discard counts; the implicit keep comes on top.
                assert!(outcome.actions.len() <= settings.max_actions + 2);
            }
        }
    }
}
