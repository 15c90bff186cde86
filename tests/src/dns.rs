//! A small authoritative DNS responder for tests (RFC 1035 §4 over UDP on 127.0.0.1): answers
//! MX, A, AAAA and TXT questions from a fixed table, NXDOMAIN for names it does not know, and an
//! empty answer (NODATA) for known names without a record of the asked type. Written here so
//! outbound tests need no DNS package; it is a test fixture, not part of Postern.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One record of the table.
#[derive(Debug, Clone)]
pub enum Record {
    /// Preference and exchange ("" or "." for the null MX of RFC 7505).
    Mx(u16, String),
    Ip(IpAddr),
    /// A TXT record (split into strings of at most 255 octets, RFC 1035 §3.3.14).
    Txt(String),
}

const TYPE_A: u16 = 1;
const TYPE_MX: u16 = 15;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;

/// A running responder; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    /// Serves `table` (name, record) on a free UDP port of 127.0.0.1.
    pub fn start(table: Vec<(&str, Record)>) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind DNS socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let addr = socket.local_addr().expect("local addr");
        let table: Vec<(String, Record)> = table
            .into_iter()
            .map(|(n, r)| (n.trim_end_matches('.').to_ascii_lowercase(), r))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = respond(&table, &buf[..n]) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        DnsServer { addr, stop }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The question's name (lower case, no trailing dot), type, and where the question ends.
fn question(query: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    Some((labels.join("."), qtype, at + 4))
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn rdata(record: &Record, qtype: u16) -> Option<Vec<u8>> {
    match (record, qtype) {
        (Record::Mx(pref, host), TYPE_MX) => {
            let mut d = pref.to_be_bytes().to_vec();
            d.extend(encode_name(host));
            Some(d)
        }
        (Record::Ip(IpAddr::V4(ip)), TYPE_A) => Some(ip.octets().to_vec()),
        (Record::Ip(IpAddr::V6(ip)), TYPE_AAAA) => Some(ip.octets().to_vec()),
        (Record::Txt(text), TYPE_TXT) => Some(
            text.as_bytes()
                .chunks(255)
                .flat_map(|c| std::iter::once(c.len() as u8).chain(c.iter().copied()))
                .collect(),
        ),
        _ => None,
    }
}

fn respond(table: &[(String, Record)], query: &[u8]) -> Option<Vec<u8>> {
    let (name, qtype, end) = question(query)?;
    let known: Vec<&Record> = table
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, r)| r)
        .collect();
    let answers: Vec<Vec<u8>> = known.iter().filter_map(|r| rdata(r, qtype)).collect();
    let rcode: u16 = if known.is_empty() { 3 } else { 0 }; // NXDOMAIN or NOERROR
    let mut out = query[..2].to_vec(); // the id
    // QR, AA, RD copied; RA.
    let rd = u16::from(query[2] & 1) << 8;
    out.extend((0x8400u16 | rd | 0x80 | rcode).to_be_bytes());
    out.extend(1u16.to_be_bytes());
    out.extend((answers.len() as u16).to_be_bytes());
    out.extend(0u32.to_be_bytes()); // no authority, no additional records
    out.extend_from_slice(&query[12..end]);
    for data in answers {
        out.extend([0xC0, 12]); // the question's name
        out.extend(qtype.to_be_bytes());
        out.extend(1u16.to_be_bytes()); // IN
        out.extend(60u32.to_be_bytes());
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
    }
    Some(out)
}
