//! The admin subcommands: accounts, aliases, domains, store check.

use std::io::BufRead;
use std::sync::Arc;

use mailgate_store::{password, SqliteStore, Store};

use super::{AliasCommand, DomainCommand, StoreCommand, UserCommand};
use crate::config::Config;

fn open(config: &Config) -> Result<Arc<dyn Store>, String> {
    let store: Arc<SqliteStore> = SqliteStore::open(&config.data_dir).map_err(|e| {
        format!(
            "cannot open the store in {}: {e}",
            config.data_dir.display()
        )
    })?;
    Ok(store)
}

fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err("the password on standard input is empty".into());
    }
    Ok(password)
}

async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || password::hash_password(&password))
        .await
        .map_err(|e| e.to_string())
}

fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_lowercase())
        .unwrap_or_default()
}

async fn is_local(config: &Config, store: &Arc<dyn Store>, domain: &str) -> Result<bool, String> {
    if config.domains.iter().any(|d| d == domain) {
        return Ok(true);
    }
    Ok(store
        .list_domains()
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .any(|d| d.name == domain))
}

/// `mailgate user ...`
pub async fn user(config: &Config, command: UserCommand) -> Result<(), String> {
    let store = open(config)?;
    match command {
        UserCommand::Add { address, .. } => {
            let password = read_password()?;
            let domain = domain_of(&address);
            if !is_local(config, &store, &domain).await? {
                eprintln!("mailgate: warning: {domain} is not a local domain; add it with `mailgate domain add {domain}` to receive mail for {address}");
            }
            store
                .create_account(&address, &hash(password).await?)
                .await
                .map_err(|e| e.to_string())?;
            println!("created {}", address.to_lowercase());
        }
        UserCommand::List => {
            for a in store.list_accounts().await.map_err(|e| e.to_string())? {
                println!("{}", a.address);
            }
        }
        UserCommand::Quota { address, limit } => {
            let bytes = parse_quota(&limit)?;
            if !store
                .set_quota(&address, bytes)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no account {address}"));
            }
            match bytes {
                Some(b) => println!("quota of {} set to {b} bytes", address.to_lowercase()),
                None => println!("quota of {} removed", address.to_lowercase()),
            }
        }
        UserCommand::Passwd { address, .. } => {
            let password = read_password()?;
            if !store
                .set_password_hash(&address, &hash(password).await?)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no account {address}"));
            }
            println!("password changed for {}", address.to_lowercase());
        }
        UserCommand::Del { address } => {
            if !store
                .delete_account(&address)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no account {address}"));
            }
            println!("deleted {}", address.to_lowercase());
        }
    }
    Ok(())
}

/// Parses a quota: `none`, a number of bytes, or a number with K, M or G
/// (powers of 1024).
fn parse_quota(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let factor: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            return Err(format!(
                "bad quota {text:?}: use bytes, a number with K, M or G, or none"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .map(Some)
        .ok_or_else(|| format!("bad quota {text:?}: use bytes, a number with K, M or G, or none"))
}

/// `mailgate alias ...`
pub async fn alias(config: &Config, command: AliasCommand) -> Result<(), String> {
    let store = open(config)?;
    match command {
        AliasCommand::Add { alias, targets } => {
            store
                .set_alias(&alias, &targets)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{} -> {}",
                alias.to_lowercase(),
                targets.join(", ").to_lowercase()
            );
        }
        AliasCommand::List => {
            for a in store.list_aliases().await.map_err(|e| e.to_string())? {
                println!("{} -> {}", a.alias, a.targets.join(", "));
            }
        }
        AliasCommand::Del { alias } => {
            if !store
                .delete_alias(&alias)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no alias {alias}"));
            }
            println!("deleted {}", alias.to_lowercase());
        }
    }
    Ok(())
}

/// `mailgate domain ...`
pub async fn domain(config: &Config, command: DomainCommand) -> Result<(), String> {
    let store = open(config)?;
    match command {
        DomainCommand::Add { domain, catch_all } => {
            store.add_domain(&domain).await.map_err(|e| e.to_string())?;
            if let Some(target) = &catch_all {
                store
                    .set_catch_all(&domain, Some(target))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            println!("added {}", domain.to_lowercase());
        }
        DomainCommand::List => {
            let stored = store.list_domains().await.map_err(|e| e.to_string())?;
            for d in &config.domains {
                let catch_all = stored
                    .iter()
                    .find(|s| &s.name == d)
                    .and_then(|s| s.catch_all.clone());
                match catch_all {
                    Some(c) => println!("{d}\tconfig\tcatch-all={c}"),
                    None => println!("{d}\tconfig"),
                }
            }
            for d in stored.iter().filter(|s| !config.domains.contains(&s.name)) {
                match &d.catch_all {
                    Some(c) => println!("{}\tstore\tcatch-all={c}", d.name),
                    None => println!("{}\tstore", d.name),
                }
            }
        }
        DomainCommand::Del { domain } => {
            let domain = domain.to_lowercase();
            if config.domains.contains(&domain) {
                return Err(format!(
                    "{domain} is listed in the configuration file; remove it there"
                ));
            }
            if !store
                .delete_domain(&domain)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no domain {domain}"));
            }
            println!("deleted {domain}");
        }
    }
    Ok(())
}

/// `mailgate store check`
pub async fn store(config: &Config, command: StoreCommand) -> Result<(), String> {
    let store = open(config)?;
    match command {
        StoreCommand::Check => {
            let problems = store.check().await.map_err(|e| e.to_string())?;
            if problems.is_empty() {
                println!("store ok: {}", config.data_dir.display());
                Ok(())
            } else {
                for p in &problems {
                    println!("{p}");
                }
                Err(format!("{} problem(s) found in the store", problems.len()))
            }
        }
    }
}

/// Creates the demo account of the development profile if it is missing.
pub async fn ensure_demo_account(config: &Config) -> Result<(), String> {
    let store = open(config)?;
    if store
        .account(crate::dev::DEMO_USER)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let h = hash(crate::dev::DEMO_PASSWORD.to_string()).await?;
        store
            .create_account(crate::dev::DEMO_USER, &h)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_quota;

    #[test]
    fn quotas() {
        assert_eq!(parse_quota("none"), Ok(None));
        assert_eq!(parse_quota("1024"), Ok(Some(1024)));
        assert_eq!(parse_quota("5M"), Ok(Some(5 << 20)));
        assert_eq!(parse_quota("2g"), Ok(Some(2 << 30)));
        assert!(parse_quota("5T").is_err());
        assert!(parse_quota("").is_err());
        assert!(parse_quota("-1").is_err());
        assert!(parse_quota("99999999999999999999G").is_err());
    }
}
