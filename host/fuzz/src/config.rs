//! The configuration-loader target: [`Config::parse`], everything
//! `Config::load` does after reading the file (TOML, then every check,
//! relay and inbound settings included).

use std::path::Path;

use mailgate::config::Config;

/// `config`: any text as a configuration file. It is accepted or refused
/// with an error whose message can be printed; an accepted configuration
/// passed its own checks, and parsing is deterministic.
pub fn config(bytes: &[u8]) {
    // Lossy, so that a flipped bit still gives a file to parse (reading
    // a file that is not UTF-8 fails before parsing).
    let text = String::from_utf8_lossy(bytes);
    let text = text.as_ref();
    let path = Path::new("fuzz.toml");
    match Config::parse(text, path) {
        Ok(c) => {
            assert!(!c.hostname.trim().is_empty());
            assert!(c.domains.iter().all(|d| d.trim() == d));
            let _ = c.idle_timeout();
            let _ = c.policy();
            let again = Config::parse(text, path).expect("the same text parses again");
            assert_eq!(again.domains, c.domains);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
