//! Slow clients: how long a command line may take to arrive, and how
//! slowly message data may trickle in.
//!
//! Both are deadlines, not timeouts per read: a client that sends one
//! byte every few seconds resets no timer.
//! - A command line (or an AUTH answer) must arrive whole within
//!   [`SmtpLimits::command_timeout`] of its first byte.
//! - A message transfer (from DATA, or from the first BDAT of a message,
//!   to the end of the message, the command lines between chunks
//!   included) must average at least [`SmtpLimits::min_transfer_rate`]
//!   bytes per second once [`SmtpLimits::transfer_grace`] has passed.
//!
//! Silence before a command starts is the idle timeout's business
//! (`crate::server`). Time comes from `tokio::time`, so tests can pause
//! and advance it.

use std::time::Duration;

use tokio::time::Instant;

use crate::context::SmtpLimits;

/// The pacing state of one session.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// When the first byte of the command line being received arrived.
    line_started: Option<Instant>,
    /// The message transfer under way.
    transfer: Option<Transfer>,
}

#[derive(Debug, Clone, Copy)]
struct Transfer {
    started: Instant,
    bytes: u64,
}

impl Pace {
    /// Part of a command line is buffered (`partial`) or not, after
    /// bytes arrived at `now`.
    pub(crate) fn line(&mut self, partial: bool, now: Instant) {
        if partial {
            self.line_started.get_or_insert(now);
        } else {
            self.line_started = None;
        }
    }

    /// A message transfer starts (DATA, or the first BDAT of a message,
    /// or the bytes of a refused chunk being dropped); does nothing if
    /// one is under way.
    pub(crate) fn start_transfer(&mut self, now: Instant) {
        self.transfer.get_or_insert(Transfer {
            started: now,
            bytes: 0,
        });
    }

    /// The transfer ended (message complete, transaction reset).
    pub(crate) fn end_transfer(&mut self) {
        self.transfer = None;
    }

    /// `n` bytes arrived during the transfer, if one is under way.
    pub(crate) fn received(&mut self, n: usize) {
        if let Some(t) = self.transfer.as_mut() {
            t.bytes = t.bytes.saturating_add(n as u64);
        }
    }

    /// The moment at which the client is too slow if nothing more
    /// arrives; `None` when no deadline runs.
    pub(crate) fn deadline(&self, limits: &SmtpLimits) -> Option<Instant> {
        let line = self
            .line_started
            .filter(|_| !limits.command_timeout.is_zero())
            .map(|s| s + limits.command_timeout);
        let transfer = self
            .transfer
            .filter(|_| limits.min_transfer_rate > 0)
            .map(|t| {
                // The time `bytes` may take at the minimum rate.
                let earned =
                    Duration::from_millis(t.bytes.saturating_mul(1000) / limits.min_transfer_rate);
                t.started + earned.max(limits.transfer_grace)
            });
        match (line, transfer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Why the client is too slow at `now`, if it is.
    pub(crate) fn too_slow(&self, limits: &SmtpLimits, now: Instant) -> Option<&'static str> {
        let deadline = self.deadline(limits)?;
        if now < deadline {
            return None;
        }
        Some(match self.line_started {
            Some(s) if !limits.command_timeout.is_zero() && s + limits.command_timeout <= now => {
                "command line too slow"
            }
            _ => "transfer too slow",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SmtpLimits {
        SmtpLimits {
            command_timeout: Duration::from_secs(10),
            min_transfer_rate: 100,
            transfer_grace: Duration::from_secs(3),
            ..SmtpLimits::default()
        }
    }

    #[test]
    fn command_line_deadline_runs_from_its_first_byte() {
        let l = limits();
        let t0 = Instant::now();
        let mut p = Pace::default();
        assert_eq!(p.deadline(&l), None);
        p.line(true, t0);
        // More bytes of the same line do not move the deadline.
        p.line(true, t0 + Duration::from_secs(9));
        assert_eq!(p.deadline(&l), Some(t0 + Duration::from_secs(10)));
        assert_eq!(p.too_slow(&l, t0 + Duration::from_secs(9)), None);
        assert_eq!(
            p.too_slow(&l, t0 + Duration::from_secs(10)),
            Some("command line too slow")
        );
        // The line ended: no deadline; the next one starts afresh.
        p.line(false, t0 + Duration::from_secs(9));
        assert_eq!(p.deadline(&l), None);
        p.line(true, t0 + Duration::from_secs(20));
        assert_eq!(p.deadline(&l), Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn transfer_rate_after_the_grace() {
        let l = limits();
        let t0 = Instant::now();
        let mut p = Pace::default();
        p.start_transfer(t0);
        // Nothing received: the grace is all it has.
        assert_eq!(p.deadline(&l), Some(t0 + Duration::from_secs(3)));
        assert_eq!(p.too_slow(&l, t0 + Duration::from_secs(2)), None);
        assert_eq!(
            p.too_slow(&l, t0 + Duration::from_secs(3)),
            Some("transfer too slow")
        );
        // 1000 bytes at 100 B/s earn 10 s from the start.
        p.received(1000);
        assert_eq!(p.deadline(&l), Some(t0 + Duration::from_secs(10)));
        assert_eq!(p.too_slow(&l, t0 + Duration::from_secs(9)), None);
        // A second start does not restart the clock.
        p.start_transfer(t0 + Duration::from_secs(5));
        assert_eq!(p.deadline(&l), Some(t0 + Duration::from_secs(10)));
        p.end_transfer();
        assert_eq!(p.deadline(&l), None);
        // Bytes outside a transfer count for nothing.
        p.received(5000);
        assert_eq!(p.deadline(&l), None);
    }

    #[test]
    fn the_earlier_deadline_wins_and_zero_rate_is_off() {
        let mut l = limits();
        let t0 = Instant::now();
        let mut p = Pace::default();
        p.start_transfer(t0);
        p.received(100_000);
        p.line(true, t0 + Duration::from_secs(1));
        assert_eq!(p.deadline(&l), Some(t0 + Duration::from_secs(11)));
        l.min_transfer_rate = 0;
        assert_eq!(p.deadline(&l), Some(t0 + Duration::from_secs(11)));
        l.command_timeout = Duration::ZERO;
        assert_eq!(p.deadline(&l), None);
    }
}
