//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer or
//! container proxy in front of mailgate opens each connection with a
//! header naming the real client, so that SPF, the connection and login
//! limits, the logs and `Received:` see the client rather than the proxy.
//!
//! Per listener (`[listen.proxy] smtp = true`, ...), and only from the
//! addresses of `[limits] proxy_from`: a connection from anywhere else on
//! such a listener is closed at once and logged (it could otherwise claim
//! to be any client). A header is required on every connection of such a
//! listener; a missing, malformed or oversized one closes the connection.
//!
//! # Bounds
//! - [`MAX_V1_HEADER`]: 107 bytes, the spec's own bound for version 1.
//! - [`MAX_V2_HEADER`]: version 2 headers (16 bytes and the addresses and
//!   TLVs) up to 4096 bytes; longer ones are refused.
//! - [`HEADER_TIMEOUT`]: the whole header must arrive within 5 seconds of
//!   the connection (as Postfix's `postscreen_upstream_proxy_timeout`).
//!
//! # Layout
//! [`frame`] tells from the bytes so far whether the header is complete
//! and how long it is, without I/O; [`parse`] reads the client address
//! from a complete header with the `ppp` crate; [`read_header`] reads
//! exactly the header off the socket (peeking, so that not one byte of
//! the session after it, such as a TLS ClientHello, is taken).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mailgate_smtp::TrustedNetworks;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest version 1 header, CRLF included (the spec's bound).
pub const MAX_V1_HEADER: usize = 107;
/// The longest version 2 header accepted, the 16-byte fixed part included.
pub const MAX_V2_HEADER: usize = 4096;
/// The time within which the whole header must arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The version 2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The version 1 prefix.
const V1_PREFIX: &[u8] = b"PROXY ";

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The connection does not start with a PROXY header.
    #[error("no PROXY protocol header")]
    NotProxy,
    /// Longer than [`MAX_V1_HEADER`] or [`MAX_V2_HEADER`].
    #[error("PROXY header longer than {0} bytes")]
    TooLong(usize),
    /// The header is complete but wrong.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    /// Not complete within [`HEADER_TIMEOUT`].
    #[error("no complete PROXY header within {}s", HEADER_TIMEOUT.as_secs())]
    Timeout,
    /// The proxy closed the connection before the header ended.
    #[error("connection closed in the PROXY header")]
    Closed,
    /// Reading the socket failed.
    #[error("i/o error reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`frame`] found in the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A header of this many bytes is there whole.
    Complete(usize),
    /// Every byte so far belongs to a header that has not ended yet.
    Incomplete,
}

/// Where the header in `buf` ends, without parsing its fields.
///
/// Version 1: `"PROXY " ... CRLF`, at most 107 bytes. Version 2: the
/// 12-byte signature, version/command, family, a 16-bit length, then that
/// many bytes.
pub fn frame(buf: &[u8]) -> Result<Frame, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if buf.len() < 16 {
            return Ok(Frame::Incomplete);
        }
        let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if total > MAX_V2_HEADER {
            return Err(ProxyError::TooLong(MAX_V2_HEADER));
        }
        return Ok(if buf.len() >= total {
            Frame::Complete(total)
        } else {
            Frame::Incomplete
        });
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyError::NotProxy);
    }
    let window = &buf[..buf.len().min(MAX_V1_HEADER)];
    if let Some(lf) = window.iter().position(|b| *b == b'\n') {
        if lf == 0 || window[lf - 1] != b'\r' {
            return Err(ProxyError::Malformed("line not ended by CRLF".into()));
        }
        return Ok(Frame::Complete(lf + 1));
    }
    if buf.len() >= MAX_V1_HEADER {
        return Err(ProxyError::TooLong(MAX_V1_HEADER));
    }
    Ok(Frame::Incomplete)
}

/// The client address in a complete header; `None` when the header says
/// the connection is the proxy's own (v1 `UNKNOWN`, v2 `LOCAL`, or an
/// address family other than TCP over IPv4/IPv6), in which case the
/// connection's own peer address stands.
pub fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    use ppp::v1;
    use ppp::v2;
    let malformed = |e: &dyn std::fmt::Display| ProxyError::Malformed(e.to_string());
    if header.starts_with(V2_SIGNATURE) {
        let h = v2::Header::try_from(header).map_err(|e| malformed(&e))?;
        if h.command == v2::Command::Local {
            return Ok(None);
        }
        return Ok(match h.addresses {
            v2::Addresses::IPv4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            v2::Addresses::IPv6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            v2::Addresses::Unix(_) | v2::Addresses::Unspecified => None,
        });
    }
    let h = v1::Header::try_from(header).map_err(|e| malformed(&e))?;
    if h.header.len() != header.len() {
        return Err(ProxyError::Malformed("bytes after the header line".into()));
    }
    Ok(match h.addresses {
        v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v1::Addresses::Unknown => None,
    })
}

/// Reads exactly one PROXY header off `stream` within [`HEADER_TIMEOUT`]
/// and returns the client address it names (`None`: keep the peer's).
pub async fn read_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyError> {
    tokio::time::timeout(HEADER_TIMEOUT, read_header_untimed(stream))
        .await
        .map_err(|_| ProxyError::Timeout)?
}

async fn read_header_untimed(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyError> {
    // Bytes taken off the socket so far: all of them header bytes.
    let mut taken: Vec<u8> = Vec::with_capacity(MAX_V1_HEADER);
    let mut peeked = vec![0u8; MAX_V2_HEADER];
    loop {
        // Peek first: what follows the header is the session's and must
        // stay in the socket. A peek returns at once while unread bytes
        // wait, so whatever is peeked and not yet a whole header is taken
        // (it can only be header), and the next peek waits for more.
        let room = MAX_V2_HEADER - taken.len();
        let n = stream.peek(&mut peeked[..room]).await?;
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        let mut seen = taken.clone();
        seen.extend_from_slice(&peeked[..n]);
        match frame(&seen)? {
            Frame::Complete(len) => {
                let rest = len - taken.len();
                taken.resize(len, 0);
                stream.read_exact(&mut taken[len - rest..]).await?;
                return parse(&taken);
            }
            Frame::Incomplete => {
                if seen.len() >= MAX_V2_HEADER {
                    return Err(ProxyError::TooLong(MAX_V2_HEADER));
                }
                let start = taken.len();
                taken.resize(start + n, 0);
                stream.read_exact(&mut taken[start..]).await?;
            }
        }
    }
}

/// `[limits] proxy_from`: the addresses and ranges a PROXY header is
/// believed from (the same list type as `[relay] trusted_networks`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(TrustedNetworks);

impl TrustedProxies {
    /// Parses `"10.0.0.5"`, `"10.0.0.0/8"`, `"fd00::/8"`, `"::1"`.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        TrustedNetworks::parse(entries)
            .map(TrustedProxies)
            .map_err(|e| {
                format!(
                    "limits.proxy_from: {:?} is not an address or CIDR range",
                    e.0
                )
            })
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as IPv4) is one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(ip)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn v2_tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut body = src.to_vec();
        body.extend_from_slice(&[10, 0, 0, 1]);
        body.extend_from_slice(&sport.to_be_bytes());
        body.extend_from_slice(&25u16.to_be_bytes());
        v2(1, 0x11, &body)
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\r\n";
        assert_eq!(frame(h).unwrap(), Frame::Complete(h.len()));
        assert_eq!(parse(h).unwrap(), Some("192.0.2.7:40000".parse().unwrap()));
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n";
        assert_eq!(
            parse(h).unwrap(),
            Some("[2001:db8::7]:40000".parse().unwrap())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
    }

    #[test]
    fn v2_tcp4_local_and_tlvs() {
        let h = v2_tcp4([198, 51, 100, 9], 5000);
        assert_eq!(frame(&h).unwrap(), Frame::Complete(28));
        assert_eq!(
            parse(&h).unwrap(),
            Some("198.51.100.9:5000".parse().unwrap())
        );
        assert_eq!(parse(&v2(0, 0, &[])).unwrap(), None);
        // A TLV after the addresses (AWS adds one) is skipped.
        let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1, 0x13, 0x88, 0, 25];
        body.extend_from_slice(&[0x04, 0, 3, b'a', b'b', b'c']);
        let h = v2(1, 0x11, &body);
        assert_eq!(
            parse(&h).unwrap(),
            Some("198.51.100.9:5000".parse().unwrap())
        );
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\r\n".to_vec();
        for h in [v1, v2_tcp4([1, 2, 3, 4], 1)] {
            for cut in 0..h.len() {
                assert_eq!(frame(&h[..cut]).unwrap(), Frame::Incomplete, "{cut}");
            }
            let mut more = h.clone();
            more.extend_from_slice(b"EHLO x\r\n");
            assert_eq!(frame(&more).unwrap(), Frame::Complete(h.len()));
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(frame(b"EHLO x\r\n"), Err(ProxyError::NotProxy)));
        assert!(matches!(frame(b"\x16\x03\x01"), Err(ProxyError::NotProxy)));
        let long = [b"PROXY ".as_slice(), &[b'1'; 200]].concat();
        assert!(matches!(frame(&long), Err(ProxyError::TooLong(107))));
        assert!(matches!(
            frame(b"PROXY TCP4\n"),
            Err(ProxyError::Malformed(_))
        ));
        for bad in [
            b"PROXY TCP4 999.0.2.7 10.0.0.1 40000 25\r\n".as_slice(),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 25\r\n",
            b"PROXY TCP5 192.0.2.7 10.0.0.1 1 25\r\n",
            b"PROXY TCP4 192.0.2.7\r\n",
            b"PROXY \xff\xfe\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(frame(&big), Err(ProxyError::TooLong(_))));
        // Version 2 with an address block shorter than its family needs.
        assert!(parse(&v2(1, 0x11, &[1, 2, 3])).is_err());
    }

    #[test]
    fn no_input_panics() {
        // Every byte at every position of short inputs, and truncations
        // of real headers with bytes flipped.
        let seeds = [
            b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\r\n".to_vec(),
            v2_tcp4([1, 2, 3, 4], 1),
        ];
        for seed in &seeds {
            for i in 0..seed.len() {
                for b in [0u8, b' ', b'\r', b'\n', 0xff, b'9', 0x21] {
                    let mut m = seed.clone();
                    m[i] = b;
                    if let Ok(Frame::Complete(n)) = frame(&m) {
                        let _ = parse(&m[..n]);
                    }
                    let _ = parse(&m[..i]);
                }
            }
        }
    }

    #[test]
    fn trusted_proxies() {
        let t =
            TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into(), "fd00::/8".into()])
                .unwrap();
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(t.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(t.contains("fd12::1".parse().unwrap()));
        assert!(!t.contains("127.0.0.2".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example".into()]).is_err());
    }
}
