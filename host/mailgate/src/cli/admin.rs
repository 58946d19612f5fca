//! The admin subcommands: accounts, aliases, domains.

use std::io::BufRead;
use std::sync::Arc;

use mailgate_store::{password, Store};

use super::{AliasCommand, DomainCommand, UserCommand};
use crate::config::Config;

async fn open(config: &Config) -> Result<Arc<dyn Store>, String> {
    Ok(super::open_store(config).await?)
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
    let store = open(config).await?;
    match command {
        UserCommand::Add { address, .. } => {
            if domain_of(&address).is_empty() || address.starts_with('@') {
                return Err(format!(
                    "{address:?} is not an address: give the account as user@domain"
                ));
            }
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
        UserCommand::Show { address, json } => {
            super::mailbox::user_show(&store, &address, json).await?;
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
        UserCommand::Del { address, force } => {
            let address = address.trim().to_lowercase();
            if store
                .account(&address)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("no account {address}"));
            }
            let refs = references(&store, &address).await?;
            if !refs.is_empty() && !force {
                let names: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
                return Err(format!(
                    "{address} is still a target of {}; mail sent there would be lost. \
                     Change those first, or use --force to remove {address} from them",
                    names.join(", ")
                ));
            }
            for r in &refs {
                println!("{}", unlink(&store, r, &address).await?);
            }
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
    let store = open(config).await?;
    match command {
        AliasCommand::Add { alias, targets } => {
            let alias = alias.trim().to_lowercase();
            let domain = domain_of(&alias);
            if domain.is_empty() || !is_local(config, &store, &domain).await? {
                return Err(format!(
                    "{alias}: {domain:?} is not a local domain; add it with `mailgate domain add`"
                ));
            }
            for t in &targets {
                check_target(config, &store, t).await?;
            }
            check_loop(&store, &alias, &targets).await?;
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
    let store = open(config).await?;
    match command {
        DomainCommand::Add {
            domain,
            catch_all,
            no_catch_all,
        } => {
            let remove = no_catch_all || catch_all.as_deref().is_some_and(is_none);
            let target = catch_all.filter(|t| !is_none(t));
            if let Some(t) = &target {
                // The domain being added counts as local for its own catch-all.
                let adding = domain.trim().trim_end_matches('.').to_lowercase();
                if domain_of(t) != adding {
                    check_target(config, &store, t).await?;
                } else {
                    check_exists(&store, t).await?;
                }
            }
            store.add_domain(&domain).await.map_err(|e| e.to_string())?;
            if target.is_some() || remove {
                store
                    .set_catch_all(&domain, target.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            println!("added {}", domain.to_lowercase());
        }
        DomainCommand::CatchAll { domain, target } => {
            let domain = domain.trim().to_lowercase();
            if !is_local(config, &store, &domain).await? {
                return Err(format!(
                    "no domain {domain}; add it with `mailgate domain add {domain}`"
                ));
            }
            if is_none(&target) {
                store
                    .set_catch_all(&domain, None)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("catch-all of {domain} removed");
            } else {
                check_target(config, &store, &target).await?;
                store
                    .set_catch_all(&domain, Some(&target))
                    .await
                    .map_err(|e| e.to_string())?;
                println!("catch-all of {domain} -> {}", target.trim().to_lowercase());
            }
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

/// Whether a catch-all argument means "no catch-all".
fn is_none(target: &str) -> bool {
    let t = target.trim();
    t.is_empty() || t.eq_ignore_ascii_case("none")
}

/// Something that delivers to an account: an alias listing it, or a
/// domain's catch-all.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ref {
    Alias(String),
    CatchAll(String),
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ref::Alias(a) => write!(f, "alias {a}"),
            Ref::CatchAll(d) => write!(f, "the catch-all of {d}"),
        }
    }
}

/// Whether `target` names `address` (itself, or a plus-address of it).
pub(super) fn names(target: &str, address: &str) -> bool {
    let target = target.trim().to_lowercase();
    if target == address {
        return true;
    }
    match (target.rsplit_once('@'), address.rsplit_once('@')) {
        (Some((tl, td)), Some((al, ad))) => {
            td == ad && tl.split_once('+').is_some_and(|(base, _)| base == al)
        }
        _ => false,
    }
}

/// The aliases and catch-alls that point at `address`.
async fn references(store: &Arc<dyn Store>, address: &str) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    for a in store.list_aliases().await.map_err(|e| e.to_string())? {
        if a.targets.iter().any(|t| names(t, address)) {
            out.push(Ref::Alias(a.alias));
        }
    }
    for d in store.list_domains().await.map_err(|e| e.to_string())? {
        if d.catch_all.as_deref().is_some_and(|c| names(c, address)) {
            out.push(Ref::CatchAll(d.name));
        }
    }
    Ok(out)
}

/// Removes `address` from `r`; returns the line saying what was done.
async fn unlink(store: &Arc<dyn Store>, r: &Ref, address: &str) -> Result<String, String> {
    match r {
        Ref::Alias(alias) => {
            let targets = store
                .alias(alias)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            let rest: Vec<String> = targets.into_iter().filter(|t| !names(t, address)).collect();
            if rest.is_empty() {
                store.delete_alias(alias).await.map_err(|e| e.to_string())?;
                Ok(format!(
                    "alias {alias} deleted: {address} was its only target"
                ))
            } else {
                store
                    .set_alias(alias, &rest)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "removed {address} from alias {alias} (now -> {})",
                    rest.join(", ")
                ))
            }
        }
        Ref::CatchAll(domain) => {
            store
                .set_catch_all(domain, None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("catch-all of {domain} removed (it was {address})"))
        }
    }
}

/// Checks an alias or catch-all target: a local domain, and an account or
/// alias that exists (directly or as the base of a plus-address).
async fn check_target(config: &Config, store: &Arc<dyn Store>, target: &str) -> Result<(), String> {
    let target = target.trim().to_lowercase();
    let (_, domain) = match target.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() => (l, d),
        _ => return Err(format!("{target:?} is not an address")),
    };
    if !is_local(config, store, domain).await? {
        // Forwarded: the sender is rewritten (SRS) so that the message
        // passes SPF at its destination; without it, most would not.
        if config.srs.enabled() {
            return Ok(());
        }
        return Err(format!(
            "{target}: {domain} is not a local domain. Forwarding to other domains \
             needs SRS (sender rewriting): set [srs] secret in the configuration"
        ));
    }
    check_exists(store, &target).await
}

/// Checks that `target` is an account or alias (directly or as the base of
/// a plus-address).
async fn check_exists(store: &Arc<dyn Store>, target: &str) -> Result<(), String> {
    let target = target.trim().to_lowercase();
    let (local, domain) = match target.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() => (l, d),
        _ => return Err(format!("{target:?} is not an address")),
    };
    let mut candidates = vec![target.clone()];
    if let Some((base, _)) = local.split_once('+') {
        if !base.is_empty() {
            candidates.push(format!("{base}@{domain}"));
        }
    }
    for c in &candidates {
        if store.account(c).await.map_err(|e| e.to_string())?.is_some()
            || store.alias(c).await.map_err(|e| e.to_string())?.is_some()
        {
            return Ok(());
        }
    }
    Err(format!(
        "{target} does not exist: there is no account or alias by that name \
         (create it first with `mailgate user add` or `mailgate alias add`)"
    ))
}

/// Refuses `alias -> targets` if following the targets through the stored
/// aliases leads back to `alias`.
async fn check_loop(store: &Arc<dyn Store>, alias: &str, targets: &[String]) -> Result<(), String> {
    // Depth-first, each path kept to name the loop.
    let mut stack: Vec<Vec<String>> = targets
        .iter()
        .map(|t| vec![alias.to_string(), t.trim().to_lowercase()])
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().cloned().unwrap_or_default();
        if last == alias {
            return Err(format!("alias loop refused: {}", path.join(" -> ")));
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        if store
            .account(&last)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            continue;
        }
        for t in store
            .alias(&last)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default()
        {
            let mut next = path.clone();
            next.push(t.to_lowercase());
            stack.push(next);
        }
    }
    Ok(())
}

/// Creates the demo account of the development profile if it is missing.
pub async fn ensure_demo_account(config: &Config) -> Result<(), String> {
    let store = open(config).await?;
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
