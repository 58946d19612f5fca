//! When each account last logged in, and from where (`mailgate user show`,
//! like Dovecot's `last_login` plugin).
//!
//! One row per account, replaced at each recorded login and removed with
//! the account. The authenticator records at most one login per account
//! per minute (see `mailgate-auth`), so a client that reconnects in a loop
//! costs no write per connection.

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::types::LastLogin;
use crate::StoreResult;

/// `last_logins(account, at, client)`; additive and idempotent, no
/// schema version.
pub(crate) const LAST_LOGINS: &str = r#"
CREATE TABLE IF NOT EXISTS last_logins (
    account INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    client TEXT NOT NULL
);
"#;

impl SqliteStore {
    pub(crate) async fn record_login_sqlite(
        &self,
        address: &str,
        at: i64,
        client: &str,
    ) -> StoreResult<()> {
        let address = address.trim().to_lowercase();
        let client = client.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO last_logins (account, at, client)
                 SELECT id, ?2, ?3 FROM accounts WHERE address = ?1",
                params![address, at, client],
            )?;
            Ok(((), vec![]))
        })
        .await
    }

    pub(crate) async fn last_login_sqlite(&self, address: &str) -> StoreResult<Option<LastLogin>> {
        let address = address.trim().to_lowercase();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT l.at, l.client FROM last_logins l JOIN accounts a ON a.id = l.account
                 WHERE a.address = ?1",
            )?
            .query_row([&address], |r| {
                Ok(LastLogin {
                    at: r.get(0)?,
                    client: r.get(1)?,
                })
            })
            .optional()?)
        })
        .await
    }
}
