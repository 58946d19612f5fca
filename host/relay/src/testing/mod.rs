//! Test support (feature `test-support`): an in-process DNS server, an
//! in-memory [`crate::dns::Dns`], and a scripted SMTP peer.

pub mod dns;
pub mod peer;
pub mod static_dns;

pub use dns::TestDnsServer;
pub use peer::{PeerScript, ScriptedPeer};
pub use static_dns::StaticDns;
