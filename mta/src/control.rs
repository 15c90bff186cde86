//! Queue control for `postern queue` (list, show, flush, retry, delete) on the `control`
//! listener (queue.sock, made by the supervisor): the peer check (SO_PEERCRED), the protocol
//! of `shared::proto::queue`, and the changes to the manager's schedule. It never delivers:
//! flush and retry only make messages due in `delivery::run`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::daemon::{Sessions, Shutdown};
use shared::proto::queue::{Entry, Hello, RcptEntry, Reply, Request, encode, read_frame};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::delivery::Manager;
use crate::queue::{RcptState, Status, Stored, now_secs};

/// How long a client may take to say hello or to send its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where each message stands in the manager, as far as the control socket needs to know.
#[derive(Default)]
pub struct Schedule {
    /// Waiting messages: when their next attempt is due (seconds since the epoch).
    next: HashMap<String, u64>,
    /// Messages whose attempt is under way (or waits for a delivery slot).
    running: HashSet<String>,
    /// Running messages deleted meanwhile: removed when their attempt ends.
    deleted: HashSet<String>,
}

impl Schedule {
    pub fn waiting(&mut self, id: &str, after: Duration) {
        self.next
            .insert(id.to_string(), now_secs() + after.as_secs().max(1));
    }

    pub fn started(&mut self, id: &str) {
        self.next.remove(id);
        self.running.insert(id.to_string());
    }

    /// An attempt ended; true when the message was deleted meanwhile.
    pub fn finished(&mut self, id: &str) -> bool {
        self.running.remove(id);
        self.deleted.remove(id)
    }
}

/// What the control connections ask of `delivery::run`.
pub enum Command {
    Flush(oneshot::Sender<u32>),
    Retry(String, oneshot::Sender<Result<u32, String>>),
    Delete(String, oneshot::Sender<Result<(), String>>),
}

/// Applies a command to the manager's timetable (`due`), inside `delivery::run`.
pub fn apply(manager: &Arc<Manager>, due: &mut BTreeMap<Instant, Vec<String>>, command: Command) {
    match command {
        Command::Flush(reply) => {
            let ids: Vec<String> = std::mem::take(due).into_values().flatten().collect();
            tracing::info!(
                event = "queue.flush",
                messages = ids.len(),
                "every waiting message is due now"
            );
            let _ = reply.send(ids.len() as u32);
            due.insert(Instant::now(), ids);
        }
        Command::Retry(id, reply) => {
            let answer = if take(due, &id) {
                tracing::info!(event = "queue.retry", id = %id, "message is due now");
                due.entry(Instant::now()).or_default().push(id);
                Ok(1)
            } else if manager.schedule().running.contains(&id) {
                Err(format!("{id}: an attempt is under way"))
            } else {
                Err(format!("{id}: no such message"))
            };
            let _ = reply.send(answer);
        }
        Command::Delete(id, reply) => delete(manager, due, id, reply),
    }
}

/// Deletes a waiting message now, a running one when its attempt ends.
fn delete(
    manager: &Arc<Manager>,
    due: &mut BTreeMap<Instant, Vec<String>>,
    id: String,
    reply: oneshot::Sender<Result<(), String>>,
) {
    let waiting = take(due, &id);
    {
        let mut schedule = manager.schedule();
        schedule.next.remove(&id);
        if !waiting && schedule.running.contains(&id) {
            schedule.deleted.insert(id.clone());
            tracing::info!(
                event = "queue.deleted",
                id = %id,
                "deleted; removed when the attempt under way ends"
            );
            let _ = reply.send(Ok(()));
            return;
        }
    }
    let manager = manager.clone();
    tokio::spawn(async move {
        let _ = reply.send(delete_now(&manager, &id).await);
    });
}

/// Removes `id` from the timetable; whether it was there.
fn take(due: &mut BTreeMap<Instant, Vec<String>>, id: &str) -> bool {
    for ids in due.values_mut() {
        if let Some(at) = ids.iter().position(|x| x == id) {
            ids.swap_remove(at);
            return true;
        }
    }
    false
}

/// Removes a message's files (synced) and logs `queue.deleted`.
pub async fn delete_now(manager: &Manager, id: &str) -> Result<(), String> {
    let queue = manager.queue.clone();
    let owned = id.to_string();
    match tokio::task::spawn_blocking(move || queue.delete(&owned)).await {
        Ok(Ok(())) => {
            tracing::info!(
                event = "queue.deleted",
                id,
                "message deleted; it will not be delivered"
            );
            Ok(())
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{id}: no such message"))
        }
        other => {
            tracing::error!(
                event = "queue.delete_failed",
                id,
                "cannot delete: {other:?}"
            );
            Err(format!("{id}: cannot delete: {other:?}"))
        }
    }
}

/// The listing of one message.
pub fn entry(stored: &Stored, status: &Status, size: u64, next: Option<u64>) -> Entry {
    let recipients = stored
        .envelope
        .recipients
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (state, reply) = match status.recipients.get(i) {
                Some(RcptState::Delivered) => ("delivered", None),
                Some(RcptState::Failed { reply, .. }) => ("failed", Some(reply.clone())),
                _ => ("pending", None),
            };
            RcptEntry {
                address: r.address.clone(),
                state: state.into(),
                reply,
            }
        })
        .collect();
    Entry {
        queue_id: stored.id.clone(),
        size,
        arrived: stored.arrived,
        sender: stored.envelope.sender.clone(),
        attempts: status.attempts,
        last_error: status.last_error.clone(),
        next_attempt: next,
        recipients,
    }
}

/// Every message queued in `dir`, read only (no lock, no change): also what `postern queue
/// list` shows when the MTA is not running. A message that vanishes meanwhile is skipped.
pub fn scan(dir: &Path, next: &HashMap<String, u64>) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for id in crate::queue::list_dir(dir)? {
        let size = std::fs::metadata(dir.join(format!("{id}.msg")))
            .map(|m| m.len())
            .unwrap_or(0);
        if let Ok((stored, _, status)) = crate::queue::read(dir, &id) {
            out.push(entry(&stored, &status, size, next.get(&id).copied()));
        }
    }
    Ok(out)
}

/// The header section of a queued message (up to the first empty line).
pub fn headers(body: &[u8]) -> String {
    let end = body
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(body.len(), |p| p + 1);
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// Serves the control listener until shutdown.
pub async fn serve(
    listener: UnixListener,
    manager: Arc<Manager>,
    commands: mpsc::UnboundedSender<Command>,
    mut shutdown: Shutdown,
) {
    let mut sessions = Sessions::default();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (manager, commands) = (manager.clone(), commands.clone());
                    sessions.spawn(async move { connection(stream, manager, commands).await });
                }
                Err(e) => {
                    tracing::warn!(event = "accept.error", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    sessions.drain(Duration::from_secs(2)).await;
}

/// Root, or the MTA's own user (development, where everything runs as one user).
fn allowed(stream: &UnixStream) -> Result<u32, String> {
    let uid = stream.peer_cred().map_err(|e| e.to_string())?.uid();
    if uid == 0 || uid == nix_uid() {
        Ok(uid)
    } else {
        Err(format!("uid {uid} may not control the queue"))
    }
}

fn nix_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

async fn connection(
    stream: UnixStream,
    manager: Arc<Manager>,
    commands: mpsc::UnboundedSender<Command>,
) {
    let uid = match allowed(&stream) {
        Ok(uid) => uid,
        Err(e) => {
            tracing::warn!(event = "control.peer_refused", "{e}; closing");
            return;
        }
    };
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    if let Err(e) = handshake(&mut reader, &mut w).await {
        tracing::warn!(event = "control.bad_hello", uid, "{e}; closing");
        return;
    }
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut reader)).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(e)) => {
                tracing::warn!(event = "control.bad_frame", uid, error = %e, "closing");
                return;
            }
        };
        let reply = match serde_json::from_slice::<Request>(&frame) {
            Ok(request) => answer(&manager, &commands, request).await,
            Err(e) => {
                tracing::warn!(event = "control.bad_request", uid, error = %e, "refused");
                Reply::Error {
                    id: 0,
                    message: format!("malformed request: {e}"),
                }
            }
        };
        if w.write_all(&encode(&reply)).await.is_err() {
            return;
        }
    }
}

/// Our hello, then the peer's, checked.
async fn handshake(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    w: &mut tokio::net::unix::OwnedWriteHalf,
) -> Result<(), String> {
    w.write_all(&encode(&Hello::ours()))
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(IDLE_TIMEOUT, read_frame(reader)).await {
        Ok(Ok(Some(frame))) => serde_json::from_slice::<Hello>(&frame)
            .map_err(|e| format!("bad hello: {e}"))
            .and_then(|h| h.check()),
        Ok(Ok(None)) => Err("closed before its hello".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no hello in time".into()),
    }
}

/// Sends a command to the manager and waits for its answer.
async fn ask<T>(
    commands: &mpsc::UnboundedSender<Command>,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    commands.send(make(tx)).ok()?;
    rx.await.ok()
}

async fn answer(
    manager: &Arc<Manager>,
    commands: &mpsc::UnboundedSender<Command>,
    request: Request,
) -> Reply {
    let id = request.id();
    let error = |message: String| Reply::Error { id, message };
    let gone = || Reply::Error {
        id,
        message: "the queue manager has stopped".into(),
    };
    match request {
        Request::List { .. } => match list(manager).await {
            Ok(messages) => Reply::List { id, messages },
            Err(e) => error(e),
        },
        Request::Show { queue_id, .. } => match show(manager, &queue_id).await {
            Ok((message, headers)) => Reply::Show {
                id,
                message,
                headers,
            },
            Err(e) => error(e),
        },
        Request::Flush { .. } => match ask(commands, Command::Flush).await {
            Some(count) => Reply::Scheduled { id, count },
            None => gone(),
        },
        Request::Retry { queue_id, .. } => {
            match ask(commands, |tx| Command::Retry(queue_id, tx)).await {
                Some(Ok(count)) => Reply::Scheduled { id, count },
                Some(Err(e)) => error(e),
                None => gone(),
            }
        }
        Request::Delete { queue_id, .. } => {
            match ask(commands, |tx| Command::Delete(queue_id, tx)).await {
                Some(Ok(())) => Reply::Deleted { id },
                Some(Err(e)) => error(e),
                None => gone(),
            }
        }
    }
}

async fn list(manager: &Manager) -> Result<Vec<Entry>, String> {
    let dir = manager.queue.dir().to_path_buf();
    let next = manager.schedule().next.clone();
    tokio::task::spawn_blocking(move || scan(&dir, &next))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot list the queue: {e}"))
}

async fn show(manager: &Manager, id: &str) -> Result<(Entry, String), String> {
    let queue = manager.queue.clone();
    let next = manager.schedule().next.get(id).copied();
    let owned = id.to_string();
    let loaded = tokio::task::spawn_blocking(move || {
        let size = std::fs::metadata(queue.dir().join(format!("{owned}.msg")))
            .map(|m| m.len())
            .unwrap_or(0);
        queue.load(&owned).map(|l| (l, size))
    })
    .await
    .map_err(|e| e.to_string())?;
    match loaded {
        Ok(((stored, body, status), size)) => {
            Ok((entry(&stored, &status, size, next), headers(&body)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!("{id}: no such message")),
        Err(e) => Err(format!("{id}: cannot read: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_stop_at_the_empty_line() {
        assert_eq!(headers(b"A: 1\nB: 2\n\nbody\n\nmore"), "A: 1\nB: 2\n");
        assert_eq!(headers(b"A: 1\n"), "A: 1\n");
    }

    #[test]
    fn take_removes_one_id_from_the_timetable() {
        let mut due = BTreeMap::new();
        due.insert(Instant::now(), vec!["A".to_string(), "B".to_string()]);
        assert!(take(&mut due, "A"));
        assert!(!take(&mut due, "A"));
        assert_eq!(due.values().flatten().collect::<Vec<_>>(), ["B"]);
    }

    #[test]
    fn schedule_tracks_deletes_during_an_attempt() {
        let mut s = Schedule::default();
        s.waiting("A", Duration::from_secs(30));
        assert!(s.next["A"] >= now_secs() + 29);
        s.started("A");
        assert!(!s.next.contains_key("A") && s.running.contains("A"));
        s.deleted.insert("A".into());
        assert!(s.finished("A"));
        assert!(!s.finished("A"));
    }
}
