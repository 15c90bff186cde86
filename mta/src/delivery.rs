//! The queue manager (ARCHITECTURE §6 step 3), the coordinator of delivery: local recipients
//! are handed to the MDA (or the configured LMTP target) over LMTP, remote ones to
//! `outbound` (SMTP); a 4xx keeps them queued with back-off, a 5xx or the queue lifetime fails
//! them and `bounce` tells the sender. On start everything queued is picked up again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::config::DeliveryTarget;
use shared::daemon::{AnyStream, DRAIN_LIMIT, Shutdown};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::outbound::Outcome;
use crate::queue::{Queue, Queued, RcptState, Status, Stored};
use crate::wire::{needs_smtputf8, to_wire};
use shared::proto::auth::Recipient;

/// Deliveries running at once.
const CONCURRENCY: usize = 16;
/// Largest message handed from the SMTP session to its first delivery attempt in memory.
const KEEP_IN_MEMORY: usize = 256 * 1024;
/// Longest wait for an LMTP reply (RFC 5321 §4.5.3.2 gives 10 minutes for the final one).
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Manager {
    pub queue: Arc<Queue>,
    /// Set when the LMTP target is not Postern's own MDA: aliases are then resolved here.
    pub auth: Option<Arc<shared::proto::auth::AuthClient>>,
    pub domains: Vec<String>,
    /// Idle LMTP connections for reuse.
    pub pool: tokio::sync::Mutex<Vec<LmtpConn>>,
    pub target: DeliveryTarget,
    pub hostname: String,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// `[queue] lifetime` and `delay_warning`.
    pub lifetime: Duration,
    pub delay_warning: Duration,
    /// Remote recipients go out here.
    pub outbound: crate::outbound::Outbound,
    /// Where bounces (new messages) are announced, as the SMTP sessions announce theirs.
    pub queued: mpsc::UnboundedSender<Queued>,
    /// What `postern queue` sees of the schedule (control.rs).
    pub schedule: std::sync::Mutex<crate::control::Schedule>,
}

impl Manager {
    pub fn schedule(&self) -> std::sync::MutexGuard<'_, crate::control::Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs until shutdown: delivers what `incoming` announces and what is due for a retry. On
/// shutdown, attempts under way may finish (bounded by `DRAIN_LIMIT`), so a stop between a
/// delivery and the write of its status (which would send that message again) is rare.
pub async fn run(
    manager: Arc<Manager>,
    mut incoming: mpsc::UnboundedReceiver<Queued>,
    mut commands: mpsc::UnboundedReceiver<crate::control::Command>,
    mut shutdown: Shutdown,
) {
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<(String, Duration)>();
    let mut due: BTreeMap<Instant, Vec<String>> = BTreeMap::new();
    // Room for `[outbound] concurrency` connections beside the local deliveries (a slow
    // remote destination still holds its slots while it is tried).
    let slots = CONCURRENCY + manager.outbound.settings.concurrency as usize;
    let permits = Arc::new(Semaphore::new(slots));
    let mut tasks = JoinSet::new();
    due.entry(Instant::now())
        .or_default()
        .extend(recover(&manager).await);
    loop {
        let now = Instant::now();
        let ready: Vec<Instant> = due.range(..=now).map(|(t, _)| *t).collect();
        for t in ready {
            for id in due.remove(&t).unwrap_or_default() {
                start(&mut tasks, &manager, &permits, &retry_tx, id, None);
            }
        }
        let next = due
            .keys()
            .next()
            .copied()
            .unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(queued) = incoming.recv() => {
                let id = queued.stored.id.clone();
                // Big messages are read back when their turn comes rather than held while
                // they wait for a delivery slot.
                let fresh = (queued.body.len() <= KEEP_IN_MEMORY).then_some(queued);
                start(&mut tasks, &manager, &permits, &retry_tx, id, fresh);
            }
            Some((id, after)) = retry_rx.recv() => {
                manager.schedule().waiting(&id, after);
                due.entry(Instant::now() + after).or_default().push(id);
            }
            Some(command) = commands.recv() => {
                crate::control::apply(&manager, &mut due, command);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
    // Attempts not started yet stay queued for the next start; those under way finish.
    permits.close();
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(DRAIN_LIMIT, drain).await;
}

/// Whatever was accepted before a stop or a crash, to deliver now.
async fn recover(manager: &Manager) -> Vec<String> {
    let queue = manager.queue.clone();
    match tokio::task::spawn_blocking(move || queue.list()).await {
        Ok(Ok(ids)) => {
            if !ids.is_empty() {
                tracing::info!(
                    event = "queue.recovered",
                    messages = ids.len(),
                    "delivering queued messages"
                );
            }
            ids
        }
        other => {
            tracing::error!(
                event = "queue.scan_failed",
                "cannot list the queue: {other:?}"
            );
            Vec::new()
        }
    }
}

fn start(
    tasks: &mut JoinSet<()>,
    manager: &Arc<Manager>,
    permits: &Arc<Semaphore>,
    retry: &mpsc::UnboundedSender<(String, Duration)>,
    id: String,
    fresh: Option<Queued>,
) {
    let (manager, permits, retry) = (manager.clone(), permits.clone(), retry.clone());
    manager.schedule().started(&id);
    tasks.spawn(async move {
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        let again = deliver_one(&manager, &id, fresh).await;
        if manager.schedule().finished(&id) {
            // `postern queue delete` came during the attempt.
            let _ = crate::control::delete_now(&manager, &id).await;
        } else if let Some(after) = again {
            let _ = retry.send((id, after));
        }
    });
}

/// The message from memory when it was just stored, else from the queue.
async fn load(
    manager: &Manager,
    id: &str,
    fresh: Option<Queued>,
) -> Option<(Stored, Vec<u8>, Status)> {
    if let Some(queued) = fresh {
        let status = queued.fresh_status();
        return Some((queued.stored, queued.body, status));
    }
    let queue = manager.queue.clone();
    let owned = id.to_string();
    match tokio::task::spawn_blocking(move || queue.load(&owned)).await {
        Ok(Ok(l)) => Some(l),
        other => {
            tracing::error!(
                event = "queue.load_failed",
                id,
                "cannot read queued message: {other:?}"
            );
            None
        }
    }
}

/// One delivery attempt of one message: its local recipients over LMTP, its remote ones over
/// SMTP, then expiry and bounces; the status recorded. Returns when to try again, if needed.
async fn deliver_one(manager: &Manager, id: &str, fresh: Option<Queued>) -> Option<Duration> {
    let (stored, body, mut status) = match load(manager, id, fresh).await {
        Some(l) => l,
        None => return Some(manager.retry_max),
    };
    let pending = |local: bool, status: &Status| -> Vec<usize> {
        (0..stored.envelope.recipients.len())
            .filter(|&i| {
                stored.envelope.recipients[i].local == local
                    && status.recipients.get(i) == Some(&RcptState::Pending)
            })
            .collect()
    };
    let (local, remote) = (pending(true, &status), pending(false, &status));
    if !local.is_empty() || !remote.is_empty() {
        status.attempts += 1;
    }
    if !local.is_empty() {
        deliver_local(manager, &stored, &body, &mut status, &local).await;
    }
    if !remote.is_empty() {
        deliver_remote(manager, &stored, &body, &mut status, &remote).await;
    }
    crate::bounce::expire(&stored, &mut status, manager.lifetime);
    crate::bounce::report(manager, &stored, &body, &mut status).await;
    // Pending recipients, or a DSN that could not be queued: try again later.
    let again = status
        .recipients
        .iter()
        .any(|s| *s == RcptState::Pending || crate::bounce::is_unreported(s));
    let attempts = status.attempts;
    save(manager, id, status).await;
    again.then(|| backoff(manager, attempts.saturating_sub(1)))
}

async fn deliver_local(
    manager: &Manager,
    stored: &Stored,
    body: &[u8],
    status: &mut Status,
    pending: &[usize],
) {
    let groups = expand(manager, stored, pending).await;
    let mut mailboxes: Vec<String> = Vec::new();
    for address in groups.iter().flat_map(|g| g.iter().flatten()) {
        if !mailboxes.iter().any(|m| m.eq_ignore_ascii_case(address)) {
            mailboxes.push(address.clone());
        }
    }
    let delivered = if mailboxes.is_empty() {
        Ok(Vec::new())
    } else {
        lmtp_deliver(manager, stored, body, &mailboxes).await
    };
    match delivered {
        Ok(replies) => {
            let per_rcpt: Vec<(u16, String)> = groups
                .iter()
                .map(|g| outcome_of(g, &mailboxes, &replies))
                .collect();
            record(stored, status, pending, &per_rcpt);
        }
        Err(e) => {
            tracing::warn!(
                event = "queue.deferred",
                id = %stored.id,
                error = %e,
                "LMTP delivery failed; will retry"
            );
            status.last_error = Some(format!("local delivery: {e}"));
        }
    }
}

/// The remote recipients over SMTP; each result recorded (a recipient that accepted is never
/// sent the message again).
async fn deliver_remote(
    manager: &Manager,
    stored: &Stored,
    body: &[u8],
    status: &mut Status,
    pending: &[usize],
) {
    let outcomes = manager.outbound.deliver(stored, body, pending).await;
    for (&i, outcome) in pending.iter().zip(outcomes) {
        let rcpt = &stored.envelope.recipients[i].address;
        let state = match outcome {
            Outcome::Delivered(reply, hop) => {
                tracing::info!(
                    event = "queue.delivered",
                    id = %stored.id,
                    rcpt = %rcpt,
                    relay = %hop,
                    "{reply}"
                );
                RcptState::Delivered
            }
            Outcome::Failed(reply, remote) => {
                tracing::warn!(
                    event = "queue.failed",
                    id = %stored.id,
                    rcpt = %rcpt,
                    relay = ?remote,
                    "{reply}"
                );
                RcptState::Failed {
                    reply,
                    remote,
                    reported: false,
                }
            }
            Outcome::Deferred(reason) => {
                tracing::info!(event = "queue.deferred", id = %stored.id, rcpt = %rcpt, "{reason}");
                status.last_error = Some(reason);
                RcptState::Pending
            }
        };
        if let Some(slot) = status.recipients.get_mut(i) {
            *slot = state;
        }
    }
}

/// Records the status, or forgets the message when nothing is left to do for it.
async fn save(manager: &Manager, id: &str, mut status: Status) {
    let done = status.recipients.iter().all(|s| match s {
        RcptState::Pending => false,
        RcptState::Delivered => true,
        RcptState::Failed { reported, .. } => *reported,
    });
    let queue = manager.queue.clone();
    let owned = id.to_string();
    let write = tokio::task::spawn_blocking(move || {
        if done {
            queue.remove(&owned, &status)
        } else {
            queue.save_status(&owned, &mut status)
        }
    })
    .await;
    if !matches!(write, Ok(Ok(()))) {
        tracing::error!(
            event = "queue.write_failed",
            id,
            "cannot record delivery status: {write:?}"
        );
    }
}

/// For each pending recipient, the mailboxes the LMTP target must receive, or the reply that
/// settles it already. Postern's own MDA resolves aliases itself: it gets the addresses as
/// they are. Another LMTP server (a Dovecot) knows nothing of Postern's aliases: they are
/// resolved here through authd.
async fn expand(
    manager: &Manager,
    stored: &Stored,
    pending: &[usize],
) -> Vec<Result<Vec<String>, (u16, String)>> {
    let mut out = Vec::with_capacity(pending.len());
    for &i in pending {
        let address = &stored.envelope.recipients[i].address;
        let Some(auth) = &manager.auth else {
            out.push(Ok(vec![address.clone()]));
            continue;
        };
        let local = |a: &String| {
            a.rsplit_once('@')
                .is_some_and(|(_, d)| manager.domains.iter().any(|l| l.eq_ignore_ascii_case(d)))
        };
        out.push(match auth.lookup(address).await {
            Ok(Recipient::Mailbox { address }) => Ok(vec![address]),
            Ok(Recipient::Alias { targets }) => {
                // Remote targets were added to the envelope when the alias was accepted.
                let local_targets: Vec<String> = targets.into_iter().filter(local).collect();
                if local_targets.is_empty() {
                    Err((550, "550 5.1.1 alias has no local mailbox".into()))
                } else {
                    Ok(local_targets)
                }
            }
            Ok(Recipient::Unknown) => Err((550, "550 5.1.1 mailbox unavailable".into())),
            Err(e) => Err((451, format!("451 4.3.0 authd lookup failed: {e}"))),
        });
    }
    out
}

/// A recipient's outcome from those of its mailboxes: a temporary failure wins (try again),
/// then a permanent one, else success.
fn outcome_of(
    group: &Result<Vec<String>, (u16, String)>,
    mailboxes: &[String],
    replies: &[(u16, String)],
) -> (u16, String) {
    let list = match group {
        Err(settled) => return settled.clone(),
        Ok(list) => list,
    };
    let of = |m: &String| {
        mailboxes
            .iter()
            .position(|x| x.eq_ignore_ascii_case(m))
            .and_then(|p| replies.get(p))
            .cloned()
            .unwrap_or((451, "451 4.3.0 no reply".into()))
    };
    let results: Vec<(u16, String)> = list.iter().map(of).collect();
    results
        .iter()
        .find(|(c, _)| (400..500).contains(c))
        .or_else(|| results.iter().find(|(c, _)| *c >= 500))
        .or_else(|| results.first())
        .cloned()
        .unwrap_or((550, "550 5.1.1 no mailbox".into()))
}

fn backoff(manager: &Manager, attempts: u32) -> Duration {
    manager
        .retry_min
        .saturating_mul(1u32 << attempts.min(16))
        .min(manager.retry_max)
}

fn record(stored: &Stored, status: &mut Status, pending: &[usize], replies: &[(u16, String)]) {
    for (&i, (code, text)) in pending.iter().zip(replies) {
        let rcpt = &stored.envelope.recipients[i].address;
        let state = match code {
            200..=299 => {
                tracing::info!(event = "queue.delivered", id = %stored.id, rcpt = %rcpt, "{text}");
                RcptState::Delivered
            }
            500..=599 => {
                tracing::warn!(event = "queue.failed", id = %stored.id, rcpt = %rcpt, "{text}");
                RcptState::Failed {
                    reply: text.clone(),
                    remote: None,
                    reported: false,
                }
            }
            _ => {
                tracing::info!(event = "queue.deferred", id = %stored.id, rcpt = %rcpt, "{text}");
                RcptState::Pending
            }
        };
        if let Some(slot) = status.recipients.get_mut(i) {
            *slot = state;
        }
    }
}

/// An open LMTP connection after LHLO, reusable for further transactions.
pub struct LmtpConn {
    conn: BufReader<AnyStream>,
    pipelining: bool,
    smtputf8: bool,
    eightbit: bool,
}

/// Most idle LMTP connections kept for reuse.
const POOL_MAX: usize = CONCURRENCY;

async fn lmtp_connect(manager: &Manager) -> std::io::Result<LmtpConn> {
    let stream: AnyStream = match &manager.target {
        DeliveryTarget::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        DeliveryTarget::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(addr.as_str()).await?),
    };
    let mut conn = BufReader::new(stream);
    expect(&mut conn, 220).await?;
    send(&mut conn, &format!("LHLO {}\r\n", manager.hostname)).await?;
    let (code, lines) = reply_lines(&mut conn).await?;
    if code != 250 {
        return Err(std::io::Error::other(format!(
            "LMTP: LHLO refused: {lines:?}"
        )));
    }
    let offers = |keyword: &str| {
        lines.iter().any(|l| {
            l.get(4..)
                .and_then(|k| k.split_whitespace().next())
                .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
        })
    };
    Ok(LmtpConn {
        pipelining: offers("PIPELINING"),
        smtputf8: offers("SMTPUTF8"),
        eightbit: offers("8BITMIME"),
        conn,
    })
}

/// One LMTP transaction (RFC 2033) for the pending recipients; a (code, text) per recipient.
/// Reuses a pooled connection when one is idle; a pooled connection that turns out dead is
/// replaced once by a fresh one.
async fn lmtp_deliver(
    manager: &Manager,
    stored: &Stored,
    body: &[u8],
    pending: &[String],
) -> std::io::Result<Vec<(u16, String)>> {
    let pooled = manager.pool.lock().await.pop();
    let (mut conn, results) = match pooled {
        Some(mut conn) => match transaction(&mut conn, stored, body, pending).await {
            Ok(r) => (conn, r),
            // The server closed the idle connection before answering MAIL: nothing was
            // delivered, so a fresh connection may try again at once.
            Err(e) if e.stale => {
                let mut fresh = lmtp_connect(manager).await?;
                let r = transaction(&mut fresh, stored, body, pending)
                    .await
                    .map_err(|e| e.io)?;
                (fresh, r)
            }
            Err(e) => return Err(e.io),
        },
        None => {
            let mut fresh = lmtp_connect(manager).await?;
            let r = transaction(&mut fresh, stored, body, pending)
                .await
                .map_err(|e| e.io)?;
            (fresh, r)
        }
    };
    let mut pool = manager.pool.lock().await;
    if pool.len() < POOL_MAX {
        pool.push(conn);
    } else {
        let _ = send(&mut conn.conn, "QUIT\r\n").await;
    }
    Ok(results)
}

/// A failed transaction; `stale` when it failed before the server answered MAIL (so no
/// recipient can have been delivered).
pub struct TxError {
    io: std::io::Error,
    stale: bool,
}

async fn transaction(
    lmtp: &mut LmtpConn,
    stored: &Stored,
    body: &[u8],
    rcpts: &[String],
) -> Result<Vec<(u16, String)>, TxError> {
    let mut mail_answered = false;
    let result = transaction_steps(lmtp, stored, body, rcpts, &mut mail_answered).await;
    result.map_err(|io| TxError {
        io,
        stale: !mail_answered,
    })
}

async fn transaction_steps(
    lmtp: &mut LmtpConn,
    stored: &Stored,
    body: &[u8],
    addresses: &[String],
    mail_answered: &mut bool,
) -> std::io::Result<Vec<(u16, String)>> {
    let env = &stored.envelope;
    let all = |code: u16, text: &str| vec![(code, text.to_string()); addresses.len()];
    let mut mail = format!("MAIL FROM:<{}>", env.sender);
    // Parameters only where the server offered them (RFC 6152, RFC 6531 §3.4).
    if env.body_8bit && lmtp.eightbit {
        mail.push_str(" BODY=8BITMIME");
    }
    if env.smtputf8 {
        if lmtp.smtputf8 {
            mail.push_str(" SMTPUTF8");
        } else if needs_smtputf8(env, body) {
            return Ok(all(
                554,
                "554 5.6.7 SMTPUTF8 is required, but was not offered by the LMTP server",
            ));
        }
    }
    mail.push_str("\r\n");
    let rcpts: Vec<String> = addresses
        .iter()
        .map(|a| format!("RCPT TO:<{a}>\r\n"))
        .collect();
    let conn = &mut lmtp.conn;
    let mut results: Vec<Option<(u16, String)>> = Vec::with_capacity(rcpts.len());
    if lmtp.pipelining {
        // RFC 2920: MAIL, every RCPT and DATA in one write; every one of them is answered.
        let mut batch = mail;
        for r in &rcpts {
            batch.push_str(r);
        }
        batch.push_str("DATA\r\n");
        send(conn, &batch).await?;
        let (mail_code, mail_text) = reply(conn).await?;
        *mail_answered = mail_code == 250;
        for _ in &rcpts {
            let (code, text) = reply(conn).await?;
            results.push((code >= 300).then_some((code, text)));
        }
        let (code, text) = reply(conn).await?;
        if mail_code != 250 {
            // The sender was refused: the whole transaction shares its fate.
            *mail_answered = true;
            reset(conn, code == 354).await?;
            return Ok(all(mail_code, &mail_text));
        }
        if code != 354 {
            // No DATA: close the transaction, so this connection can be reused.
            reset(conn, false).await?;
            return Ok(results
                .into_iter()
                .map(|r| r.unwrap_or((code, text.clone())))
                .collect());
        }
    } else {
        send(conn, &mail).await?;
        let (mail_code, mail_text) = reply(conn).await?;
        *mail_answered = true;
        if mail_code != 250 {
            reset(conn, false).await?;
            return Ok(all(mail_code, &mail_text));
        }
        for r in &rcpts {
            send(conn, r).await?;
            let (code, text) = reply(conn).await?;
            results.push((code >= 300).then_some((code, text)));
        }
        if results.iter().all(Option::is_some) {
            reset(conn, false).await?;
            return Ok(results.into_iter().flatten().collect());
        }
        send(conn, "DATA\r\n").await?;
        let (code, text) = reply(conn).await?;
        if code != 354 {
            reset(conn, false).await?;
            return Ok(results
                .into_iter()
                .map(|r| r.unwrap_or((code, text.clone())))
                .collect());
        }
    }
    conn.get_mut().write_all(&to_wire(body)).await?;
    for slot in results.iter_mut().filter(|r| r.is_none()) {
        *slot = Some(reply(conn).await?);
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or((451, "no reply".into())))
        .collect())
}

/// Ends an unfinished transaction (RSET) so the connection can be reused. `in_data`: the
/// server unexpectedly said 354, so an empty message is sent first and its replies ignored.
async fn reset(conn: &mut BufReader<AnyStream>, in_data: bool) -> std::io::Result<()> {
    if in_data {
        send(conn, ".\r\n").await?;
        let _ = reply(conn).await?;
    }
    send(conn, "RSET\r\n").await?;
    expect(conn, 250).await
}

async fn send(conn: &mut BufReader<AnyStream>, line: &str) -> std::io::Result<()> {
    conn.get_mut().write_all(line.as_bytes()).await
}

/// Reads a (possibly multi-line) reply: its code and its last line's text.
async fn reply(conn: &mut BufReader<AnyStream>) -> std::io::Result<(u16, String)> {
    let (code, mut lines) = reply_lines(conn).await?;
    Ok((code, lines.pop().unwrap_or_default()))
}

/// Reads a (possibly multi-line) reply: its code and every line.
async fn reply_lines(conn: &mut BufReader<AnyStream>) -> std::io::Result<(u16, Vec<String>)> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(REPLY_TIMEOUT, conn.read_line(&mut line))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "LMTP reply timeout")
            })??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "LMTP server closed",
            ));
        }
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad LMTP reply {line:?}"),
            )
        })?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.trim_end().to_string());
        if last {
            return Ok((code, lines));
        }
    }
}

async fn expect(conn: &mut BufReader<AnyStream>, code: u16) -> std::io::Result<()> {
    let (got, text) = reply(conn).await?;
    if got == code {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "LMTP: expected {code}, got {text:?}"
        )))
    }
}
