//! Outbound delivery of one message's remote recipients (ARCHITECTURE §6 step 3): grouped by
//! destination (their domain, or the relay host for all), routed (`route.rs`), sent over SMTP
//! (`smtp.rs` driving `client.rs`), with a concurrency limit in total and per destination and
//! idle connections kept briefly for the next message to the same destination. Returns a
//! result per recipient; recording it in the queue is the coordinator's (`delivery.rs`) job.

pub mod client;
pub mod route;
pub mod smtp;
pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::config::slice::RelaySlice;
use shared::config::{OutboundSettings, OutboundTls};
use tokio::sync::{Mutex, Semaphore};

use crate::queue::Stored;
use crate::session::Rcpt;
use route::{Dns, Hop, RouteError};
use smtp::{Dial, Login, Peer, Timeouts, TlsMode};

/// How long an idle connection is kept for the next message to the same destination.
const IDLE_KEEP: Duration = Duration::from_secs(10);

/// What became of one remote recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the next hop: the reply, and the hop.
    Delivered(String, String),
    /// A permanent failure: the reply (or our own reason), and the hop if one answered.
    Failed(String, Option<String>),
    /// Try again later, for this reason.
    Deferred(String),
}

/// The outbound side of the queue manager.
pub struct Outbound {
    pub dns: Arc<dyn Dns>,
    pub settings: OutboundSettings,
    pub hostname: String,
    pub relay: Option<RelaySlice>,
    tls: tls::ClientTls,
    total: Arc<Semaphore>,
    per_destination: Mutex<HashMap<String, Arc<Semaphore>>>,
    idle: Mutex<HashMap<String, Vec<(Instant, Peer)>>>,
}

impl Outbound {
    pub fn new(
        dns: Arc<dyn Dns>,
        settings: OutboundSettings,
        hostname: String,
        relay: Option<RelaySlice>,
    ) -> anyhow::Result<Outbound> {
        Ok(Outbound {
            dns,
            total: Arc::new(Semaphore::new(settings.concurrency as usize)),
            settings,
            hostname,
            relay,
            tls: tls::ClientTls::new()?,
            per_destination: Mutex::new(HashMap::new()),
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// Delivers `body` (LF line ends) to the recipients at `indexes` of the envelope; one
    /// outcome per index, in order.
    pub async fn deliver(&self, stored: &Stored, body: &[u8], indexes: &[usize]) -> Vec<Outcome> {
        let rcpts = &stored.envelope.recipients;
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (pos, &i) in indexes.iter().enumerate() {
            let dest = self.destination(&rcpts[i].address);
            match groups.iter_mut().find(|(d, _)| *d == dest) {
                Some((_, list)) => list.push(pos),
                None => groups.push((dest, vec![pos])),
            }
        }
        let wire = crate::wire::to_wire(body);
        let mut outcomes = vec![Outcome::Deferred("not attempted".into()); indexes.len()];
        for (dest, positions) in groups {
            let group: Vec<&Rcpt> = positions.iter().map(|&p| &rcpts[indexes[p]]).collect();
            let results = self.deliver_group(&dest, stored, body, &wire, &group).await;
            for (p, outcome) in positions.into_iter().zip(results) {
                outcomes[p] = outcome;
            }
        }
        outcomes
    }

    /// The relay for everything, else the recipient's domain (lower case).
    fn destination(&self, address: &str) -> String {
        match &self.relay {
            Some(_) => String::new(),
            None => address
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default(),
        }
    }

    async fn deliver_group(
        &self,
        dest: &str,
        stored: &Stored,
        body: &[u8],
        wire: &[u8],
        rcpts: &[&Rcpt],
    ) -> Vec<Outcome> {
        let all = |o: Outcome| vec![o; rcpts.len()];
        let limit = self.destination_limit(dest).await;
        let (Ok(_total), Ok(_mine)) = (self.total.acquire().await, limit.acquire().await) else {
            return all(Outcome::Deferred("shutting down".into()));
        };
        let mut peer = match self.open(dest).await {
            Ok(peer) => peer,
            Err(RouteError::Permanent(status, text)) => {
                return all(Outcome::Failed(format!("550 {status} {text}"), None));
            }
            Err(RouteError::Temporary(text)) => return all(Outcome::Deferred(text)),
        };
        let hop = peer.hop.name.clone();
        let size = wire.len() as u64;
        let needs_utf8 = crate::wire::needs_smtputf8(&stored.envelope, body);
        if let Some(r) = client::refuse_before_mail(&peer.caps, &stored.envelope, size, needs_utf8)
        {
            self.keep_idle(dest, peer).await;
            return all(Outcome::Failed(r.summary(), Some(hop)));
        }
        let mail = client::mail_command(&peer.caps, &stored.envelope, size);
        let lines = rcpts
            .iter()
            .map(|r| client::rcpt_command(&peer.caps, r))
            .collect();
        match peer.send_mail(mail, lines, wire).await {
            Ok(replies) => {
                self.keep_idle(dest, peer).await;
                replies.into_iter().map(|r| outcome_of(r, &hop)).collect()
            }
            Err(e) => all(Outcome::Deferred(e.text)),
        }
    }

    async fn destination_limit(&self, dest: &str) -> Arc<Semaphore> {
        let n = self.settings.per_destination as usize;
        let mut map = self.per_destination.lock().await;
        map.entry(dest.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(n)))
            .clone()
    }

    /// An idle connection to `dest` that still answers, else a new one to the first hop
    /// that takes it.
    async fn open(&self, dest: &str) -> Result<Peer, RouteError> {
        while let Some(mut peer) = self.take_idle(dest).await {
            if peer.alive().await {
                return Ok(peer);
            }
        }
        let hops = self.hops(dest).await?;
        let (mode, login) = self.policy();
        let dial = Dial {
            hostname: &self.hostname,
            timeouts: self.timeouts(),
            tls: mode,
            login: login.as_ref(),
            verify_config: self.tls.verify.clone(),
            any_config: self.tls.any.clone(),
        };
        let mut last = String::from("no mail server to try");
        for hop in &hops {
            match connect_with_fallback(&dial, hop).await {
                Ok(peer) => return Ok(peer),
                Err(e) => {
                    tracing::info!(
                        event = "outbound.connect_failed",
                        host = %hop.name,
                        addr = %hop.addr,
                        "{}",
                        e.text
                    );
                    last = e.text;
                }
            }
        }
        Err(RouteError::Temporary(last))
    }

    async fn hops(&self, dest: &str) -> Result<Vec<Hop>, RouteError> {
        match &self.relay {
            Some(relay) => route::relay_hops(self.dns.as_ref(), &relay.host, relay.port).await,
            None => route::mx_hops(self.dns.as_ref(), dest, self.settings.port).await,
        }
    }

    /// The TLS mode and credentials: the relay's (RFC 8314: implicit TLS on 465, otherwise
    /// STARTTLS required), or `[outbound] tls` for MX hosts.
    fn policy(&self) -> (TlsMode, Option<Login>) {
        if let Some(relay) = &self.relay {
            let verify = relay.tls_verify;
            let mode = if relay.implicit_tls {
                TlsMode::Implicit { verify }
            } else {
                TlsMode::Required { verify }
            };
            let login = match (&relay.username, &relay.password) {
                (Some(username), Some(password)) => Some(Login {
                    username: username.clone(),
                    password: password.clone(),
                }),
                _ => None,
            };
            return (mode, login);
        }
        let mode = match self.settings.tls {
            OutboundTls::May => TlsMode::Opportunistic,
            OutboundTls::Encrypt => TlsMode::Required { verify: false },
            OutboundTls::Verify => TlsMode::Required { verify: true },
        };
        (mode, None)
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.settings.connect_timeout,
            command: self.settings.command_timeout,
            data: self.settings.data_timeout,
            final_reply: self.settings.final_timeout,
        }
    }

    async fn take_idle(&self, dest: &str) -> Option<Peer> {
        let mut idle = self.idle.lock().await;
        let list = idle.get_mut(dest)?;
        while let Some((since, peer)) = list.pop() {
            if since.elapsed() < IDLE_KEEP {
                return Some(peer);
            }
        }
        None
    }

    async fn keep_idle(&self, dest: &str, peer: Peer) {
        let mut idle = self.idle.lock().await;
        let list = idle.entry(dest.to_string()).or_default();
        list.retain(|(since, _)| since.elapsed() < IDLE_KEEP);
        if list.len() < self.settings.per_destination as usize {
            list.push((Instant::now(), peer));
        }
    }
}

/// Connects; under opportunistic TLS a failed handshake is tried again without STARTTLS, as
/// RFC 7435 §4 lets a sender fall back to clear text.
async fn connect_with_fallback(dial: &Dial<'_>, hop: &Hop) -> Result<Peer, smtp::PeerError> {
    match smtp::connect(dial, hop).await {
        Err(e) if e.tls_failed && dial.tls == TlsMode::Opportunistic => {
            tracing::info!(
                event = "outbound.tls_fallback",
                host = %hop.name,
                "{}; trying again without TLS",
                e.text
            );
            let plain = Dial {
                tls: TlsMode::Plain,
                login: dial.login,
                hostname: dial.hostname,
                timeouts: dial.timeouts,
                verify_config: dial.verify_config.clone(),
                any_config: dial.any_config.clone(),
            };
            smtp::connect(&plain, hop).await
        }
        other => other,
    }
}

fn outcome_of(reply: client::Reply, hop: &str) -> Outcome {
    match reply.code {
        200..=299 => Outcome::Delivered(reply.summary(), hop.to_string()),
        500..=599 => Outcome::Failed(reply.summary(), Some(hop.to_string())),
        _ => Outcome::Deferred(format!("{hop} said {}", reply.summary())),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
