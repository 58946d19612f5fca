//! A DNS server for tests: answers A, AAAA, MX and TXT from a zone held in
//! memory, over UDP on a loopback port, so the real resolver path
//! ([`crate::dns::HickoryDns`]) is exercised without any package or
//! network. Unknown names get NXDOMAIN; a known name without records of the
//! asked type gets an empty NOERROR answer with a SOA (NODATA); names marked
//! with [`TestDnsServer::fail`] get SERVFAIL.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// TTL of every answer.
const TTL: u32 = 60;

#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<RData>>,
    names: HashSet<String>,
    failing: HashSet<String>,
    queries: u64,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_lowercase()
}

fn name(s: &str) -> Name {
    Name::from_ascii(format!("{}.", key(s))).unwrap_or_else(|_| Name::root())
}

/// A running test DNS server; stops when dropped.
pub struct TestDnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: JoinHandle<()>,
}

impl Drop for TestDnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestDnsServer {
    /// Starts a server on `127.0.0.1` on a free port.
    pub async fn start() -> std::io::Result<TestDnsServer> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let zone = Arc::new(Mutex::new(Zone::default()));
        let task = tokio::spawn(serve(socket, zone.clone()));
        Ok(TestDnsServer { addr, zone, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn add(&self, owner: &str, rtype: RecordType, data: RData) {
        let mut z = self.zone.lock().unwrap_or_else(|p| p.into_inner());
        z.names.insert(key(owner));
        z.records.entry((key(owner), rtype)).or_default().push(data);
    }

    /// Adds an MX record; an `exchange` of `"."` makes a null MX.
    pub fn add_mx(&self, domain: &str, preference: u16, exchange: &str) {
        let exchange = if exchange == "." {
            Name::root()
        } else {
            name(exchange)
        };
        self.add(
            domain,
            RecordType::MX,
            RData::MX(MX::new(preference, exchange)),
        );
    }

    /// Adds an A or AAAA record.
    pub fn add_ip(&self, host: &str, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.add(host, RecordType::A, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(host, RecordType::AAAA, RData::AAAA(AAAA(v6))),
        }
    }

    /// Adds a TXT record (one string).
    pub fn add_txt(&self, owner: &str, text: &str) {
        self.add(
            owner,
            RecordType::TXT,
            RData::TXT(TXT::new(vec![text.to_string()])),
        );
    }

    /// Makes the name exist without records (NODATA for every type).
    pub fn add_empty(&self, owner: &str) {
        let mut z = self.zone.lock().unwrap_or_else(|p| p.into_inner());
        z.names.insert(key(owner));
    }

    /// Answers SERVFAIL for `owner` (or stops doing so).
    pub fn fail(&self, owner: &str, failing: bool) {
        let mut z = self.zone.lock().unwrap_or_else(|p| p.into_inner());
        if failing {
            z.failing.insert(key(owner));
        } else {
            z.failing.remove(&key(owner));
        }
    }

    /// How many queries were answered so far (to see the cache at work).
    pub fn queries(&self) -> u64 {
        self.zone.lock().unwrap_or_else(|p| p.into_inner()).queries
    }
}

async fn serve(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(request) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let response = answer(&request, &zone);
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

fn answer(request: &Message, zone: &Mutex<Zone>) -> Message {
    let mut z = zone.lock().unwrap_or_else(|p| p.into_inner());
    z.queries += 1;
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.message_type = MessageType::Response;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    response.queries = request.queries.clone();
    let Some(query) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let owner = key(&query.name().to_ascii());
    if z.failing.contains(&owner) {
        response.metadata.response_code = ResponseCode::ServFail;
        return response;
    }
    if !z.names.contains(&owner) {
        response.metadata.response_code = ResponseCode::NXDomain;
        response.authorities.push(soa());
        return response;
    }
    match z.records.get(&(owner, query.query_type())) {
        Some(list) => {
            for data in list {
                response
                    .answers
                    .push(Record::from_rdata(query.name().clone(), TTL, data.clone()));
            }
        }
        None => response.authorities.push(soa()),
    }
    response
}

/// The SOA that negative answers carry (RFC 2308), with a short minimum so
/// tests can change the zone.
fn soa() -> Record {
    Record::from_rdata(
        Name::from_ascii("test.").unwrap_or_else(|_| Name::root()),
        1,
        RData::SOA(SOA::new(
            name("ns.test"),
            name("hostmaster.test"),
            1,
            60,
            60,
            60,
            1,
        )),
    )
}
