//! Delivery of an LMTP transaction into Maildirs: one outcome per accepted recipient, each
//! mailbox written once per transaction even when several recipients (aliases) lead to it.
//! Blocking file I/O: called on a blocking thread.

use std::collections::HashMap;
use std::path::Path;

use shared::maildir::{Maildir, mailbox_path};
use shared::smtp::{Reply, replies};

use crate::session::Transaction;

/// Delivers `tx`; the replies are in the order of its recipients (RFC 2033 §4.2).
pub fn deliver(mail_root: &Path, hostname: &str, tx: &Transaction) -> Vec<Reply> {
    let mut outcomes: HashMap<String, Reply> = HashMap::new();
    tx.recipients
        .iter()
        .map(|rcpt| {
            let mut reply = replies::DELIVERED;
            for mailbox in &rcpt.mailboxes {
                let outcome = outcomes.entry(mailbox.to_lowercase()).or_insert_with(|| {
                    deliver_one(mail_root, hostname, &tx.sender, mailbox, &tx.body)
                });
                if !outcome.is_positive() {
                    reply = outcome.clone();
                }
            }
            reply
        })
        .collect()
}

fn deliver_one(
    mail_root: &Path,
    hostname: &str,
    sender: &str,
    mailbox: &str,
    body: &[u8],
) -> Reply {
    let Some(dir) = mailbox_path(mail_root, mailbox) else {
        tracing::error!(event = "delivery.bad_mailbox", mailbox = ?mailbox, "address cannot name a mailbox directory");
        return replies::NO_SUCH_USER;
    };
    // RFC 5321 §4.4: the final delivery adds Return-Path; Delivered-To names the mailbox.
    let sender = sender.replace(['\r', '\n'], "");
    let header = format!("Return-Path: <{sender}>\nDelivered-To: {mailbox}\n");
    let attempt =
        || Maildir::create(&dir).and_then(|md| md.deliver(&[header.as_bytes(), body], hostname));
    // A Maildir removed since this process last wrote to it: forgotten by the failed
    // attempt, created again by the second.
    let outcome = match attempt() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => attempt(),
        other => other,
    };
    match outcome {
        Ok(delivered) => {
            tracing::info!(
                event = "delivery.ok",
                mailbox,
                file = %delivered.path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default(),
                uid = ?delivered.uid,
                "delivered"
            );
            replies::DELIVERED
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) =>
        {
            tracing::warn!(event = "delivery.no_space", mailbox, error = %e, "disk full; the sender keeps the message");
            replies::TEMP_NO_SPACE
        }
        Err(e) => {
            tracing::error!(event = "delivery.failed", mailbox, error = %e, "cannot write the message");
            replies::TEMP_LOCAL_ERROR
        }
    }
}
