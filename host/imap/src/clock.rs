//! The three clocks of a connection, and which of them runs out first.
//!
//! - **Idle** (RFC 9051 §5.4 autologout): silence between commands;
//!   [`crate::ImapContext::login_timeout`] before login,
//!   [`crate::ImapContext::idle_timeout`] (at least 30 minutes) after. It
//!   starts again after each command, and with each read while an APPEND
//!   message arrives.
//! - **Command** (`[limits] command_timeout`): a command, from its first
//!   byte to its last, must arrive within
//!   [`crate::ImapContext::command_timeout`], however slowly its bytes
//!   trickle in. The time spent receiving APPEND messages does not count:
//!   the clock stops while one arrives and goes on after it. Zero turns
//!   it off.
//! - **Transfer** (`[limits] min_transfer_rate`): while an APPEND message
//!   literal arrives, once [`crate::ImapContext::transfer_grace`] has
//!   passed since it started, the bytes received divided by the time
//!   since it started must stay at or above
//!   [`crate::ImapContext::min_transfer_rate`]; the deadline is the moment
//!   the average would fall below it if nothing more came.

use std::time::Duration;

use mailgate_imap_proto::Framer;
use tokio::time::Instant;

use crate::ImapContext;

/// `at + wait`, or about 30 years from `at` when that overflows (a
/// timeout configured absurdly long means "never").
pub(crate) fn after(at: Instant, wait: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    at.checked_add(wait)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// Which clock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Silence.
    Idle,
    /// One command took too long to arrive.
    Command,
    /// An APPEND message arrived too slowly.
    Transfer,
}

impl Expiry {
    /// The untagged BYE text and the reason logged.
    pub(crate) fn bye(self) -> (&'static str, &'static str) {
        match self {
            Expiry::Idle => ("BYE Autologout; idle for too long", "idle timeout"),
            Expiry::Command => (
                "BYE Command not received in time; closing",
                "command timeout",
            ),
            Expiry::Transfer => ("BYE Data transfer too slow; closing", "transfer too slow"),
        }
    }
}

/// An APPEND message literal being received.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    start: Instant,
    /// The framer's message byte count when it started.
    base: u64,
    received: u64,
}

/// The clocks of one connection.
#[derive(Debug)]
pub(crate) struct Clocks {
    idle: Instant,
    /// Deadline of the command being read, if one is.
    command: Option<Instant>,
    transfer: Option<Transfer>,
}

impl Clocks {
    /// Clocks with the idle deadline `idle` and no command under way.
    pub(crate) fn new(idle: Instant) -> Clocks {
        Clocks {
            idle,
            command: None,
            transfer: None,
        }
    }

    /// A frame was handled: silence is measured from now (`idle` is the
    /// new deadline).
    pub(crate) fn restart_idle(&mut self, idle: Instant) {
        self.idle = idle;
    }

    /// Bytes were framed: starts, pauses or stops the command and
    /// transfer clocks as the framer's state says. `idle_wait` restarts
    /// the idle clock while a message arrives.
    pub(crate) fn observe(
        &mut self,
        framer: &Framer,
        ctx: &ImapContext,
        idle_wait: Duration,
        now: Instant,
    ) {
        match (framer.message_progress(), self.transfer.as_mut()) {
            (Some(bytes), Some(t)) => {
                t.received = bytes.saturating_sub(t.base);
                self.idle = after(now, idle_wait);
            }
            (Some(bytes), None) => {
                self.transfer = Some(Transfer {
                    start: now,
                    base: bytes,
                    received: 0,
                });
                self.idle = after(now, idle_wait);
            }
            (None, Some(t)) => {
                // The command clock stood still while the message came.
                let paused = now.saturating_duration_since(t.start);
                if let Some(c) = self.command.as_mut() {
                    *c = after(*c, paused);
                }
                self.transfer = None;
            }
            (None, None) => {}
        }
        if !framer.in_command() {
            self.command = None;
            self.transfer = None;
        } else if self.command.is_none() && !ctx.command_timeout.is_zero() {
            self.command = Some(after(now, ctx.command_timeout));
        }
    }

    /// The first deadline and which clock it belongs to.
    pub(crate) fn next(&self, ctx: &ImapContext) -> (Instant, Expiry) {
        let mut first = (self.idle, Expiry::Idle);
        let mut consider = |at: Instant, which: Expiry| {
            if at < first.0 {
                first = (at, which);
            }
        };
        match self.transfer {
            Some(t) if ctx.min_transfer_rate > 0 => {
                // The moment received / elapsed would drop below the rate.
                let need =
                    Duration::from_millis(t.received.saturating_mul(1000) / ctx.min_transfer_rate);
                consider(
                    after(t.start, ctx.transfer_grace.max(need)),
                    Expiry::Transfer,
                );
            }
            Some(_) => {}
            None => {
                if let Some(c) = self.command {
                    consider(c, Expiry::Command);
                }
            }
        }
        first
    }
}
