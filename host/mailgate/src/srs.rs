//! `[srs]`: the Sender Rewriting Scheme's settings (see
//! `mailgate_delivery::srs` for the scheme and docs/configuration.md for
//! the keys).
//!
//! ```toml
//! [srs]
//! secret_file = "/etc/mailgate/srs.secret"   # or: secret = "..."
//! domain = "example.org"                     # default: the first of `domains`
//! # enabled = true                           # default: on when a secret is set
//! # max_age_days = 21
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use mailgate_delivery::srs::{Srs, DEFAULT_MAX_AGE_DAYS};
use mailgate_relay::client::RcptOutcome;
use mailgate_relay::local::{LocalHandoff, LocalOutcome};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The shortest secret accepted, in bytes (postsrsd makes 18 random
/// bytes; a short secret makes the 24-bit hash guessable offline).
pub const MIN_SECRET_LEN: usize = 16;

/// `[srs]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SrsSettings {
    /// On or off; absent: on when `secret` or `secret_file` is set.
    pub enabled: Option<bool>,
    /// The secret the hashes are made with (keep it: changing it breaks
    /// the bounces of mail forwarded before).
    pub secret: Option<String>,
    /// A file whose first line is the secret (instead of `secret`).
    pub secret_file: Option<PathBuf>,
    /// The domain of the rewritten senders; its SPF record must allow
    /// this server and its MX must reach it. Default: the first of the
    /// configuration's `domains`.
    pub domain: Option<String>,
    /// How many days a rewritten address is honoured (default 21).
    pub max_age_days: Option<u32>,
}

impl SrsSettings {
    /// Whether SRS is on.
    pub fn enabled(&self) -> bool {
        self.enabled
            .unwrap_or(self.secret.is_some() || self.secret_file.is_some())
    }

    /// The rewriter for these settings, `None` when off; reads
    /// `secret_file`. `domains` are the configuration's local domains.
    pub fn build(&self, domains: &[String]) -> Result<Option<Arc<Srs>>, ConfigError> {
        if !self.enabled() {
            return Ok(None);
        }
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let secret = match (&self.secret, &self.secret_file) {
            (Some(_), Some(_)) => {
                return invalid("srs: give secret or secret_file, not both".into())
            }
            (Some(s), None) => s.clone(),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => text.lines().next().unwrap_or("").trim().to_string(),
                Err(e) => {
                    return invalid(format!(
                        "srs.secret_file {}: cannot read it: {e}",
                        path.display()
                    ))
                }
            },
            (None, None) => {
                return invalid("srs is enabled but has no secret or secret_file".into())
            }
        };
        if secret.len() < MIN_SECRET_LEN {
            return invalid(format!(
                "srs: the secret must be at least {MIN_SECRET_LEN} characters \
                 (e.g. `head -c 18 /dev/urandom | base64`)"
            ));
        }
        let domain = match (&self.domain, domains.first()) {
            (Some(d), _) => d.trim().trim_end_matches('.').to_lowercase(),
            (None, Some(first)) => first.clone(),
            (None, None) => {
                return invalid("srs.domain is not set and there is no local domain".into())
            }
        };
        if domain.is_empty() || !domain.contains('.') || domain.contains(['@', ' ']) {
            return invalid(format!("srs.domain {domain:?} is not a domain"));
        }
        let days = self.max_age_days.unwrap_or(DEFAULT_MAX_AGE_DAYS);
        if !(1..=1023).contains(&days) {
            return invalid("srs.max_age_days must be between 1 and 1023".into());
        }
        Ok(Some(Arc::new(
            Srs::new(secret.into_bytes(), &domain, domains).with_max_age_days(days),
        )))
    }
}

/// The queue's local hand-off with SRS: a recipient that is one of our
/// SRS addresses (a bounce this server itself made for a copy it
/// forwarded: the next server refused it) is not a local mailbox; it is
/// reversed and queued again for the original sender, as a bounce that
/// comes back over SMTP is (`cmd/rcpt_srs.rs` in mailgate-smtp). The
/// queue runner picks the new entry up on its next pass (`[queue]
/// poll_interval`). Every other recipient goes to local delivery.
pub struct SrsHandoff {
    local: Arc<mailgate_delivery::LocalDelivery>,
    queue: Arc<dyn mailgate_store::queue::QueueStore>,
    srs: Arc<Srs>,
}

impl SrsHandoff {
    /// The hand-off of `local` and `queue` with `srs`.
    pub fn new(
        local: Arc<mailgate_delivery::LocalDelivery>,
        queue: Arc<dyn mailgate_store::queue::QueueStore>,
        srs: Arc<Srs>,
    ) -> SrsHandoff {
        SrsHandoff { local, queue, srs }
    }

    async fn relay_back(&self, sender: &str, address: &str, body: &[u8]) -> RcptOutcome {
        let original = match self.srs.reverse(address) {
            Ok(original) => original,
            Err(why) => {
                tracing::info!(rcpt = %address, reason = %why, "queue: SRS address not valid; not delivered");
                return RcptOutcome::Permanent(format!("550 5.1.1 <{address}>: {why}"));
            }
        };
        let message = mailgate_store::queue::NewQueued {
            msg_id: None,
            sender: sender.to_string(),
            recipients: vec![mailgate_store::queue::NewQueuedRecipient::new(
                original.clone(),
            )],
            raw: Arc::new(body.to_vec()),
            created: chrono::Utc::now().timestamp(),
            envid: None,
            ret_full: None,
            smtputf8: !original.is_ascii() || !sender.is_ascii(),
            eight_bit: !body.is_ascii(),
        };
        match self.queue.enqueue(message).await {
            Ok(id) => {
                tracing::info!(rcpt = %address, to = %original, queue_id = id, "queue: mail to an SRS address queued for the original sender");
                RcptOutcome::Delivered(format!("250 2.1.5 relayed to <{original}>"))
            }
            Err(e) => {
                tracing::warn!(rcpt = %address, error = %e, "queue: cannot queue mail for the original sender of an SRS address");
                RcptOutcome::Temporary("451 4.3.0 cannot queue for the original sender".into())
            }
        }
    }
}

#[async_trait::async_trait]
impl LocalHandoff for SrsHandoff {
    async fn is_local_domain(&self, domain: &str) -> mailgate_store::StoreResult<bool> {
        LocalHandoff::is_local_domain(self.local.as_ref(), domain).await
    }

    async fn deliver(
        &self,
        sender: &str,
        recipients: &[mailgate_delivery::HandOff],
        body: &[u8],
    ) -> Vec<LocalOutcome> {
        let (srs, local): (Vec<usize>, Vec<usize>) =
            (0..recipients.len()).partition(|&i| self.srs.is_srs_address(&recipients[i].address));
        let mut out: Vec<Option<LocalOutcome>> = vec![None; recipients.len()];
        if !local.is_empty() {
            let copies: Vec<mailgate_delivery::HandOff> =
                local.iter().map(|&i| recipients[i].clone()).collect();
            let outcomes = LocalHandoff::deliver(self.local.as_ref(), sender, &copies, body).await;
            for (&i, outcome) in local.iter().zip(outcomes) {
                out[i] = Some(outcome);
            }
        }
        for i in srs {
            out[i] = Some(LocalOutcome::of(
                self.relay_back(sender, &recipients[i].address, body).await,
            ));
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    LocalOutcome::of(RcptOutcome::Temporary("451 4.3.0 not delivered".into()))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["a.test".into(), "b.test".into()]
    }

    #[test]
    fn off_without_a_secret() {
        assert!(SrsSettings::default().build(&domains()).unwrap().is_none());
    }

    #[test]
    fn on_with_a_secret_and_the_first_domain() {
        let s = SrsSettings {
            secret: Some("0123456789abcdefgh".into()),
            ..Default::default()
        };
        let srs = s.build(&domains()).unwrap().unwrap();
        assert_eq!(srs.domain(), "a.test");
        assert_eq!(srs.max_age_days(), DEFAULT_MAX_AGE_DAYS);
    }

    #[test]
    fn secret_file_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("srs.secret");
        std::fs::write(&path, "0123456789abcdefgh\nignored\n").unwrap();
        let s = SrsSettings {
            secret_file: Some(path),
            domain: Some("SRS.A.test.".into()),
            ..Default::default()
        };
        let srs = s.build(&domains()).unwrap().unwrap();
        assert_eq!(srs.domain(), "srs.a.test");
    }

    #[test]
    fn refused_settings() {
        let cases = [
            SrsSettings {
                enabled: Some(true),
                ..Default::default()
            },
            SrsSettings {
                secret: Some("short".into()),
                ..Default::default()
            },
            SrsSettings {
                secret: Some("0123456789abcdefgh".into()),
                secret_file: Some("/nonexistent".into()),
                ..Default::default()
            },
            SrsSettings {
                secret_file: Some("/nonexistent/srs.secret".into()),
                ..Default::default()
            },
            SrsSettings {
                secret: Some("0123456789abcdefgh".into()),
                max_age_days: Some(0),
                ..Default::default()
            },
            SrsSettings {
                secret: Some("0123456789abcdefgh".into()),
                domain: Some("not a domain".into()),
                ..Default::default()
            },
        ];
        for c in cases {
            assert!(c.build(&domains()).is_err(), "{c:?}");
        }
        let no_domain = SrsSettings {
            secret: Some("0123456789abcdefgh".into()),
            ..Default::default()
        };
        assert!(no_domain.build(&[]).is_err());
        let off = SrsSettings {
            enabled: Some(false),
            secret: Some("short".into()),
            ..Default::default()
        };
        assert!(off.build(&domains()).unwrap().is_none());
    }
}
