//! `mailgate dkim generate DOMAIN`: a new DKIM signing key and the DNS
//! record to publish for it. Needs no `[[dkim]]` table; the key goes to
//! `<data_dir>/dkim/` unless `--out` says where.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use mailgate_relay::dkim;

/// `mailgate dkim ...`
#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Make an RSA signing key for DOMAIN, write it to a PEM file, and print
    /// the TXT record to publish and the `[[dkim]]` table to add to the
    /// configuration. Publish the record before adding the table: mail
    /// signed with a key receivers cannot find fails DKIM.
    Generate {
        /// The domain whose mail is signed (the `From:` address's domain).
        domain: String,
        /// The selector, a DNS label; the record goes at
        /// `<selector>._domainkey.<domain>`. A new selector per key lets the
        /// old record stay while mail signed with it is still in transit.
        #[arg(long, default_value = "mail")]
        selector: String,
        /// Key size in bits: 2048 is the usual size, 1024 the smallest
        /// receivers accept (RFC 8301).
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Where to write the private key (never overwritten, created
        /// 0600); default `<data_dir>/dkim/<domain>.<selector>.pem`, the
        /// data directory of the configuration file (`--config`, or
        /// /etc/mailgate/mailgate.toml). Without a configuration file,
        /// `--out` is needed.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

/// Runs one `dkim` command.
pub fn dkim(command: &DkimCommand, data_dir: Option<&Path>) -> Result<(), String> {
    let DkimCommand::Generate {
        domain,
        selector,
        bits,
        out,
    } = command;
    let bits = *bits;
    let domain = domain.trim().trim_end_matches('.').to_lowercase();
    if domain.is_empty() || !domain.contains('.') {
        return Err(format!("{domain:?} is not a domain name"));
    }
    if selector.is_empty()
        || !selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!("selector {selector:?} is not a DNS label"));
    }
    if !(1024..=4096).contains(&bits) {
        return Err("--bits must be between 1024 and 4096".into());
    }
    let path = match (out, data_dir) {
        (Some(p), _) => p.clone(),
        (None, Some(data)) => {
            let dir = data.join(crate::private::DKIM_DIR);
            mailgate_store::sqlite::create_private_dir(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            dir.join(format!("{domain}.{selector}.pem"))
        }
        (None, None) => {
            return Err(format!(
                "no configuration file ({}) to find the data directory in: \
                 give --config PATH, or --out PATH for the key",
                super::DEFAULT_CONFIG
            ))
        }
    };
    let key = dkim::generate(&domain, selector, bits).map_err(|e| e.to_string())?;
    write_private(&path, key.private_pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let shown = std::fs::canonicalize(&path).unwrap_or(path);
    println!("private key written to {}", shown.display());
    println!();
    println!("Publish this TXT record:");
    println!("{}", key.zone_line());
    println!();
    println!("TXT value (for DNS providers that take the value alone):");
    println!("{}", key.txt);
    println!();
    println!("Then add to the configuration and restart mailgate:");
    println!("[[dkim]]");
    println!("domain = \"{domain}\"");
    println!("selector = \"{selector}\"");
    println!("key = \"{}\"", shown.display());
    Ok(())
}

/// Creates `path` readable by its owner only; refuses to replace a file
/// (an old key may still be in use).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
