//! Delivery status notifications (RFC 3464) to the envelope sender: one DSN per message and
//! attempt for its recipients that failed and were not reported yet (honouring NOTIFY of
//! RFC 3461 §4.1 and RET of §4.3), and a delay warning for those who asked (NOTIFY=DELAY).
//! A DSN is a new message from the null sender queued like any other, so it is durable and
//! retried; a failed message from the null sender is never bounced (RFC 3461 §5.2, RFC 5321
//! §4.5.5). The DSN text is built by pure functions; only `report` touches the queue.

use std::time::Duration;

use crate::delivery::Manager;
use crate::queue::{RcptState, Status, Stored, now_secs};
use crate::session::{Envelope, Message, Rcpt, Trace};

/// Largest original message returned whole when the sender did not say RET; bigger ones get
/// their headers only.
const RETURN_FULL_MAX: usize = 256 * 1024;

/// Which notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failure,
    Delay,
}

/// One recipient line group of the report (RFC 3464 §2.3).
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub rcpt: &'a Rcpt,
    /// The reply or our own reason, "550 5.1.1 no such user".
    pub diagnostic: String,
    pub remote: Option<String>,
}

/// Fails every pending recipient of a message queued longer than `lifetime` (RFC 5321
/// §4.5.4.1), with the last reason it was deferred.
pub fn expire(stored: &Stored, status: &mut Status, lifetime: Duration) {
    let arrived = arrival(stored);
    if now_secs().saturating_sub(arrived) < lifetime.as_secs() {
        return;
    }
    let last = status
        .last_error
        .clone()
        .unwrap_or_else(|| "no attempt succeeded".into());
    let reply = format!(
        "451 4.4.7 message expired after {} in the queue; last error: {last}",
        shared::config::format_duration(lifetime)
    );
    for (i, state) in status.recipients.iter_mut().enumerate() {
        if *state == RcptState::Pending {
            let rcpt = stored
                .envelope
                .recipients
                .get(i)
                .map(|r| r.address.as_str())
                .unwrap_or("");
            tracing::warn!(event = "queue.expired", id = %stored.id, rcpt = %rcpt, "{reply}");
            *state = RcptState::Failed {
                reply: reply.clone(),
                remote: None,
                reported: false,
            };
        }
    }
}

/// When the message was queued; files from before `arrived` existed carry it in their id
/// (seconds in hex, then 11 hex digits of pid and counter).
fn arrival(stored: &Stored) -> u64 {
    if stored.arrived != 0 {
        return stored.arrived;
    }
    let prefix = stored.id.len().saturating_sub(11);
    stored
        .id
        .get(..prefix)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(now_secs)
}

/// Whether this recipient wants a notification of this kind (RFC 3461 §4.1: without
/// NOTIFY, failures are reported and delays are not).
fn wants(rcpt: &Rcpt, kind: Kind) -> bool {
    let has = |n: &str| rcpt.notify.iter().any(|x| x.eq_ignore_ascii_case(n));
    match kind {
        _ if has("NEVER") => false,
        Kind::Failure => rcpt.notify.is_empty() || has("FAILURE"),
        Kind::Delay => has("DELAY"),
    }
}

/// Queues the DSNs this attempt calls for and marks what they report. A crash between the
/// queueing and the status write sends a DSN twice, never none.
pub async fn report(manager: &Manager, stored: &Stored, body: &[u8], status: &mut Status) {
    let unreported: Vec<usize> = (0..status.recipients.len())
        .filter(|&i| is_unreported(&status.recipients[i]))
        .collect();
    let failed: Vec<Entry> = unreported
        .iter()
        .filter_map(
            |&i| match (&status.recipients[i], stored.envelope.recipients.get(i)) {
                (RcptState::Failed { reply, remote, .. }, Some(rcpt))
                    if wants(rcpt, Kind::Failure) =>
                {
                    Some(Entry {
                        rcpt,
                        diagnostic: reply.clone(),
                        remote: remote.clone(),
                    })
                }
                _ => None,
            },
        )
        .collect();
    // Marked only once the DSN is queued: a DSN that could not be stored is tried again.
    if failed.is_empty() || send(manager, stored, body, &failed, Kind::Failure).await {
        for &i in &unreported {
            if let RcptState::Failed { reported, .. } = &mut status.recipients[i] {
                *reported = true;
            }
        }
    }
    warn_delay(manager, stored, body, status).await;
}

/// A permanent failure no DSN has covered yet.
pub fn is_unreported(state: &RcptState) -> bool {
    matches!(
        state,
        RcptState::Failed {
            reported: false,
            ..
        }
    )
}

async fn warn_delay(manager: &Manager, stored: &Stored, body: &[u8], status: &mut Status) {
    let age = now_secs().saturating_sub(arrival(stored));
    if status.warned || manager.delay_warning.is_zero() || age < manager.delay_warning.as_secs() {
        return;
    }
    let last = status.last_error.clone().unwrap_or_default();
    let delayed: Vec<Entry> = stored
        .envelope
        .recipients
        .iter()
        .zip(&status.recipients)
        .filter(|(r, s)| **s == RcptState::Pending && wants(r, Kind::Delay))
        .map(|(rcpt, _)| Entry {
            rcpt,
            diagnostic: format!("451 4.4.1 {last}"),
            remote: None,
        })
        .collect();
    if !delayed.is_empty() {
        status.warned = send(manager, stored, body, &delayed, Kind::Delay).await;
    }
}

/// Builds the DSN and queues it to the original sender. False when it could not be stored
/// (to be tried again); true when queued, or dropped for the null sender.
async fn send(
    manager: &Manager,
    stored: &Stored,
    body: &[u8],
    entries: &[Entry<'_>],
    kind: Kind,
) -> bool {
    let sender = &stored.envelope.sender;
    if sender.is_empty() {
        tracing::warn!(
            event = "bounce.dropped",
            id = %stored.id,
            recipients = entries.len(),
            "not bouncing a message from the null sender (a bounce is never bounced)"
        );
        return true;
    }
    let date = shared::date::now();
    let text = build(&manager.hostname, stored, body, entries, kind, &date);
    let message = dsn_message(manager, sender, text);
    let queue = manager.queue.clone();
    let stored_dsn = tokio::task::spawn_blocking(move || queue.store(&message, &date)).await;
    match stored_dsn.map_err(std::io::Error::other).and_then(|r| r) {
        Ok(queued) => {
            tracing::info!(
                event = "bounce.queued",
                id = %stored.id,
                dsn = %queued.stored.id,
                kind = ?kind,
                to = %sender,
                recipients = entries.len(),
                "delivery status notification queued"
            );
            let _ = manager.queued.send(queued);
            true
        }
        Err(e) => {
            tracing::error!(
                event = "bounce.store_failed",
                id = %stored.id,
                error = %e,
                "cannot queue the DSN; will try again"
            );
            false
        }
    }
}

/// A DSN as a message from the null sender (RFC 3461 §6.2) to `sender`.
fn dsn_message(manager: &Manager, sender: &str, text: Vec<u8>) -> Message {
    let local = sender
        .rsplit_once('@')
        .is_some_and(|(_, d)| manager.domains.iter().any(|l| l.eq_ignore_ascii_case(d)));
    Message {
        envelope: Envelope {
            sender: String::new(),
            recipients: vec![Rcpt {
                address: sender.to_string(),
                local,
                notify: vec![],
                orcpt: None,
            }],
            ret: None,
            envid: None,
            body_8bit: !text.is_ascii(),
            smtputf8: false,
        },
        trace: Trace {
            helo: manager.hostname.clone(),
            remote: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            tls: None,
            user: None,
            esmtp: true,
            smtputf8: false,
        },
        body: text,
    }
}

/// The enhanced status code of a reply ("5.1.1"), or one derived from its code.
pub fn status_of(diagnostic: &str) -> String {
    let code = diagnostic.get(..3).unwrap_or("500");
    let enhanced = diagnostic.split_whitespace().nth(1).filter(|s| {
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && matches!(parts[0], "2" | "4" | "5")
    });
    match enhanced {
        Some(e) => e.to_string(),
        None if code.starts_with('4') => "4.0.0".into(),
        None if code.starts_with('2') => "2.0.0".into(),
        None => "5.0.0".into(),
    }
}

/// The whole DSN message (LF line ends, as the queue keeps messages).
pub fn build(
    hostname: &str,
    stored: &Stored,
    body: &[u8],
    entries: &[Entry<'_>],
    kind: Kind,
    date: &str,
) -> Vec<u8> {
    let boundary = format!("{}/{hostname}", stored.id);
    let (subject, action) = match kind {
        Kind::Failure => ("Undelivered Mail Returned to Sender", "failed"),
        Kind::Delay => ("Delayed Mail (still being retried)", "delayed"),
    };
    let sender = &stored.envelope.sender;
    let id = &stored.id;
    // RFC 3464 §2 and RFC 3834 §5 (Auto-Submitted).
    let mut out = [
        format!("From: Mail Delivery System <MAILER-DAEMON@{hostname}>"),
        format!("To: <{sender}>"),
        format!("Subject: {subject}"),
        format!("Date: {date}"),
        format!("Message-ID: <{id}.{}@{hostname}>", now_secs()),
        "Auto-Submitted: auto-replied".into(),
        "MIME-Version: 1.0".into(),
        "Content-Type: multipart/report; report-type=delivery-status;".into(),
        format!("\tboundary=\"{boundary}\""),
        String::new(),
        "This is a MIME-encapsulated message.".into(),
        String::new(),
        format!("--{boundary}"),
        "Content-Type: text/plain; charset=utf-8".into(),
        "Content-Description: Notification".into(),
        String::new(),
        human_part(hostname, entries, kind),
        format!("--{boundary}"),
        "Content-Type: message/delivery-status".into(),
        "Content-Description: Delivery report".into(),
        String::new(),
        String::new(),
    ]
    .join("\n");
    out.push_str(&status_part(hostname, stored, entries, action));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&returned_part(stored, body, &boundary));
    bytes.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    bytes
}

fn human_part(hostname: &str, entries: &[Entry<'_>], kind: Kind) -> String {
    let mut text = format!("This is the mail system at host {hostname}.\n\n");
    text.push_str(match kind {
        Kind::Failure => concat!(
            "Your message could not be delivered to one or more recipients.\n",
            "It is attached below.\n\n"
        ),
        Kind::Delay => concat!(
            "Your message could not be delivered yet to one or more recipients.\n",
            "Delivery will be retried; you need not send it again.\n\n"
        ),
    });
    for e in entries {
        text.push_str(&format!(
            "<{}>: {}\n",
            e.rcpt.address,
            one_line(&e.diagnostic)
        ));
    }
    text
}

/// RFC 3464 §2.2 (per message) and §2.3 (per recipient) fields.
fn status_part(hostname: &str, stored: &Stored, entries: &[Entry<'_>], action: &str) -> String {
    let mut text = format!("Reporting-MTA: dns; {hostname}\n");
    if let Some(envid) = &stored.envelope.envid {
        text.push_str(&format!("Original-Envelope-Id: {}\n", one_line(envid)));
    }
    if !stored.received.is_empty() {
        text.push_str(&format!("Arrival-Date: {}\n", stored.received));
    }
    for e in entries {
        text.push_str(&format!("\nFinal-Recipient: rfc822; {}\n", e.rcpt.address));
        if let Some(orcpt) = &e.rcpt.orcpt {
            text.push_str(&format!(
                "Original-Recipient: rfc822; {}\n",
                one_line(orcpt)
            ));
        }
        text.push_str(&format!(
            "Action: {action}\nStatus: {}\n",
            status_of(&e.diagnostic)
        ));
        if let Some(remote) = &e.remote {
            text.push_str(&format!("Remote-MTA: dns; {remote}\n"));
        }
        text.push_str(&format!(
            "Diagnostic-Code: smtp; {}\n",
            one_line(&e.diagnostic)
        ));
    }
    text
}

/// The original message (RET=FULL, or unspecified and small) or its header (RFC 3461 §4.3).
fn returned_part(stored: &Stored, body: &[u8], boundary: &str) -> Vec<u8> {
    let full = match stored.envelope.ret.as_deref() {
        Some(r) if r.eq_ignore_ascii_case("HDRS") => false,
        Some(_) => true,
        None => body.len() <= RETURN_FULL_MAX,
    };
    let mut out = format!("\n--{boundary}\n").into_bytes();
    if full {
        out.extend_from_slice(
            b"Content-Type: message/rfc822\nContent-Description: Undelivered Message\n\n",
        );
        out.extend_from_slice(body);
    } else {
        let end = body
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|p| p + 1)
            .unwrap_or(body.len());
        out.extend_from_slice(b"Content-Type: text/rfc822-headers\n");
        out.extend_from_slice(b"Content-Description: Undelivered Message Headers\n\n");
        out.extend_from_slice(&body[..end]);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// A value on one header line: no line breaks.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
#[path = "bounce_tests.rs"]
mod tests;
