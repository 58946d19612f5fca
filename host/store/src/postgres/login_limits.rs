//! Failed-login counts and trusted clients that every node shares
//! ([`LoginFailures`]).
//!
//! # Tables (migration 6)
//! - `login_failures(kind, key, failures, first)`: one row per client
//!   (`kind` `c`: an IPv4 address or an IPv6 /64 network) and per account
//!   name tried (`kind` `a`) with failures in the current window. A
//!   failure is one `INSERT … ON CONFLICT DO UPDATE` per row: the row's
//!   lock serialises nodes, and a row whose window (counted from `first`,
//!   the database's clock) has passed starts again at one.
//! - `login_trust(account, client, at)`: the clients each account logged
//!   in from, and when.
//!
//! # Size
//! Every failure also deletes the rows whose window has ended (an index
//! range on `first`: each row is deleted once), so `login_failures`
//! holds only the clients and names that failed within the last window.
//! If it still holds more than `max_rows` rows (an attack from very many
//! addresses), rows below `max_failures` (that refuse nothing yet) are
//! dropped, as the in-memory limiter does; that check runs at most once
//! per [`CAP_CHECK_INTERVAL`] per node. `login_trust` keeps at most
//! `keep` clients per account that logged in, and every trusted login
//! deletes the rows older than the trust period.
//!
//! Every node must use the same `[auth]` window: a node with a shorter
//! one deletes rows that the others still count.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::PgStore;
use crate::login_failures::{cut_key, LoginFailures, LoginStanding};
use crate::StoreResult;

/// Migration 6: the shared failure counts and trusted clients.
pub const SCHEMA: &str = r#"
CREATE TABLE login_failures (
    kind text NOT NULL,
    key text NOT NULL,
    failures integer NOT NULL,
    first timestamptz NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX login_failures_first ON login_failures(first);
CREATE TABLE login_trust (
    account text NOT NULL,
    client text NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (account, client)
);
CREATE INDEX login_trust_at ON login_trust(at);
"#;

/// How often at most a node counts the rows of `login_failures`.
pub const CAP_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// When this node last counted the rows of `login_failures`.
#[derive(Debug, Default)]
pub(crate) struct CapCheck(Mutex<Option<Instant>>);

impl CapCheck {
    /// Whether the count is due now (and marks it done).
    fn due(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < CAP_CHECK_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn count(n: Option<i32>) -> u32 {
    n.map_or(0, |n| u32::try_from(n).unwrap_or(0))
}

#[async_trait]
impl LoginFailures for PgStore {
    async fn login_standing(
        &self,
        client: &str,
        account: &str,
        window: Duration,
        trust_period: Duration,
    ) -> StoreResult<LoginStanding> {
        let (client, account) = (cut_key(client), cut_key(account));
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT
                   (SELECT failures FROM login_failures
                     WHERE kind = 'c' AND key = $1 AND first > now() - make_interval(secs => $3)),
                   (SELECT failures FROM login_failures
                     WHERE kind = 'a' AND key = $2 AND first > now() - make_interval(secs => $3)),
                   EXISTS (SELECT 1 FROM login_trust
                     WHERE account = $2 AND client = $1 AND at > now() - make_interval(secs => $4))",
                &[&client, &account, &secs(window), &secs(trust_period)],
            )
            .await?;
        Ok(LoginStanding {
            client_failures: count(row.get(0)),
            account_failures: count(row.get(1)),
            trusted: row.get(2),
        })
    }

    async fn record_login_failure(
        &self,
        client: &str,
        account: &str,
        window: Duration,
        max_failures: u32,
        max_rows: usize,
    ) -> StoreResult<(u32, u32)> {
        let (client, account) = (cut_key(client), cut_key(account));
        let window = secs(window);
        let c = self.client().await?;
        // Client first, then account: one order on every node.
        let mut counts = [0u32; 2];
        for (i, (kind, key)) in [("c", client), ("a", account)].into_iter().enumerate() {
            let row = c
                .query_one(
                    "INSERT INTO login_failures AS f (kind, key, failures, first)
                     VALUES ($1, $2, 1, now())
                     ON CONFLICT (kind, key) DO UPDATE SET
                       failures = CASE WHEN f.first <= now() - make_interval(secs => $3)
                                       THEN 1 ELSE f.failures + 1 END,
                       first = CASE WHEN f.first <= now() - make_interval(secs => $3)
                                    THEN now() ELSE f.first END
                     RETURNING failures",
                    &[&kind, &key, &window],
                )
                .await?;
            counts[i] = count(row.get(0));
        }
        c.execute(
            "DELETE FROM login_failures WHERE first <= now() - make_interval(secs => $1)",
            &[&window],
        )
        .await?;
        if self.login_cap.due() {
            let rows: i64 = c
                .query_one("SELECT count(*) FROM login_failures", &[])
                .await?
                .get(0);
            if usize::try_from(rows).unwrap_or(usize::MAX) > max_rows {
                let max = i32::try_from(max_failures).unwrap_or(i32::MAX);
                let dropped = c
                    .execute("DELETE FROM login_failures WHERE failures < $1", &[&max])
                    .await?;
                tracing::warn!(
                    rows,
                    dropped,
                    "auth: too many failed-login counts in the store; dropped those that refuse nothing yet"
                );
            }
        }
        Ok((counts[0], counts[1]))
    }

    async fn record_trusted_client(
        &self,
        client: &str,
        account: &str,
        keep: usize,
        trust_period: Duration,
    ) -> StoreResult<()> {
        let (client, account) = (cut_key(client), cut_key(account));
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let c = self.client().await?;
        c.execute(
            "INSERT INTO login_trust (account, client, at) VALUES ($1, $2, now())
             ON CONFLICT (account, client) DO UPDATE SET at = now()",
            &[&account, &client],
        )
        .await?;
        c.execute(
            "DELETE FROM login_trust WHERE account = $1 AND client NOT IN
               (SELECT client FROM login_trust WHERE account = $1 ORDER BY at DESC LIMIT $2)",
            &[&account, &keep],
        )
        .await?;
        c.execute(
            "DELETE FROM login_trust WHERE at <= now() - make_interval(secs => $1)",
            &[&secs(trust_period)],
        )
        .await?;
        Ok(())
    }
}
