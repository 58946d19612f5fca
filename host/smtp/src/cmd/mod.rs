//! Command dispatch: parse, check the sequence table, call the verb's
//! handler. One file per verb (or per small family of verbs).

mod auth;
mod bdat;
mod data;
mod deliver;
mod ehlo;
mod mail;
mod misc;
mod rcpt;
mod rcpt_srs;
mod starttls;

pub(crate) use deliver::refusal_reply;
pub(crate) use rcpt::{notify_text, orcpt_text};

use mailgate_smtp_proto::{FramedLine, Request};

use crate::session::{Input, Session};
use crate::state;

impl Session {
    /// Handles one framed command line.
    pub(crate) async fn command(&mut self, line: FramedLine) {
        let line = match line {
            Ok(line) => line,
            Err(too_long) => {
                tracing::debug!(client = %self.peer.ip(), "smtp: command line too long");
                return self.reply(too_long.reply());
            }
        };
        let request = match Request::parse(&line) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(client = %self.peer.ip(), error = %e, "smtp: bad command");
                return self.reply(e.reply());
            }
        };
        if let Request::Bdat { size, .. } = request {
            if self.bdat_too_large(size) {
                return;
            }
        }
        let allowed = match self.ctx.role {
            crate::Role::Lmtp => crate::lmtp::check(request.verb(), self.state),
            crate::Role::Mx | crate::Role::Submission => state::check(request.verb(), self.state),
        };
        if let Err(reply) = allowed {
            tracing::debug!(client = %self.peer.ip(), verb = request.verb().as_str(), state = self.state.as_str(), "smtp: out of sequence");
            if let Request::Bdat { size, .. } = request {
                // The chunk follows the command whatever we answer: drop
                // its bytes so they are not read as commands.
                self.input = Input::Discard {
                    remaining: size,
                    reply,
                };
                self.pace.start_transfer(tokio::time::Instant::now());
                return;
            }
            return self.reply(reply);
        }
        match request {
            Request::Ehlo { host } => self.ehlo(host, true).await,
            Request::Helo { host } => self.ehlo(host, false).await,
            Request::Mail { from, params } => self.mail(from, params).await,
            Request::Rcpt { to, params } => self.rcpt(to, params).await,
            Request::Data => self.data(),
            Request::Bdat { size, last } => self.bdat(size, last),
            Request::Rset => self.rset(),
            Request::Noop(_) => self.noop(),
            Request::Quit => self.quit(),
            Request::Vrfy(_) => self.vrfy(),
            Request::Expn(_) => self.expn(),
            Request::Help(_) => self.help(),
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(&mechanism, initial_response.as_deref()).await,
            // Refused by the sequence table above unless on LMTP.
            Request::Lhlo { host } => self.lhlo(host).await,
        }
    }
}
