//! [`Dns`] answered from maps in memory, for unit tests of routing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::dns::{Dns, DnsError, MxRecord};

/// What a name answers.
#[derive(Default)]
struct Entry {
    mx: Vec<MxRecord>,
    ips: Vec<IpAddr>,
    txt: Vec<String>,
}

/// An in-memory [`Dns`]: names not added are NXDOMAIN; names in the
/// failing set give a temporary error.
#[derive(Default)]
pub struct StaticDns {
    names: Mutex<HashMap<String, Entry>>,
    failing: Mutex<Vec<String>>,
}

fn key(s: &str) -> String {
    s.trim_end_matches('.').to_lowercase()
}

impl StaticDns {
    /// An empty zone.
    pub fn new() -> StaticDns {
        StaticDns::default()
    }
    /// Adds an MX record (`"."` for a null MX).
    pub fn mx(&self, domain: &str, preference: u16, exchange: &str) -> &Self {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names.entry(key(domain)).or_default().mx.push(MxRecord {
            preference,
            exchange: if exchange == "." {
                String::new()
            } else {
                key(exchange)
            },
        });
        self
    }
    /// Adds an address.
    pub fn ip(&self, host: &str, ip: IpAddr) -> &Self {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names.entry(key(host)).or_default().ips.push(ip);
        self
    }
    /// Adds a TXT record.
    pub fn txt(&self, name: &str, text: &str) -> &Self {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names
            .entry(key(name))
            .or_default()
            .txt
            .push(text.to_string());
        self
    }
    /// Makes lookups of `name` fail temporarily.
    pub fn fail(&self, name: &str) -> &Self {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key(name));
        self
    }
    fn check(&self, name: &str) -> Result<(), DnsError> {
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if failing.contains(&key(name)) {
            return Err(DnsError::Temporary {
                name: name.into(),
                reason: "SERVFAIL".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Dns for StaticDns {
    async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        self.check(domain)?;
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        match names.get(&key(domain)) {
            Some(e) => Ok(e.mx.clone()),
            None => Err(DnsError::NoSuchDomain(domain.into())),
        }
    }
    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        self.check(host)?;
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        match names.get(&key(host)) {
            Some(e) => Ok(e.ips.clone()),
            None => Err(DnsError::NoSuchDomain(host.into())),
        }
    }
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        self.check(name)?;
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        match names.get(&key(name)) {
            Some(e) => Ok(e.txt.clone()),
            None => Err(DnsError::NoSuchDomain(name.into())),
        }
    }
}
