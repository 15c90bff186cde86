//! `postern queue list|show|flush|retry|delete`: a client of the MTA's queue.sock
//! (`shared::proto::queue`) and the printing of its answers. When the MTA is not running,
//! `list` reads the queue directory itself (read only). It never changes queue files itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context as _, bail};
use shared::config::Config;
use shared::proto::queue::{Entry, Hello, MAX_REPLY, Reply, Request, encode};

/// Longest wait for the MTA's answer.
const TIMEOUT: Duration = Duration::from_secs(60);

pub enum Verb {
    List,
    Show(String),
    Flush,
    Retry(String),
    Delete(String),
}

pub fn run(config: &Config, verb: Verb) -> anyhow::Result<()> {
    let path = config.queue_socket();
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(verb, Verb::List) => return list_offline(config, &e),
        Err(e) => bail!(
            "cannot reach postern-mta at {} ({e}): is `postern serve` running, and are you \
             root?",
            path.display()
        ),
    };
    let request = match verb {
        Verb::List => Request::List { id: 1 },
        Verb::Show(queue_id) => Request::Show { id: 1, queue_id },
        Verb::Flush => Request::Flush { id: 1 },
        Verb::Retry(queue_id) => Request::Retry { id: 1, queue_id },
        Verb::Delete(queue_id) => Request::Delete { id: 1, queue_id },
    };
    let reply = exchange(stream, &request)?;
    print(reply)
}

/// Hello both ways, one request, its reply.
fn exchange(stream: UnixStream, request: &Request) -> anyhow::Result<Reply> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let hello: Hello = serde_json::from_slice(&frame(&mut reader)?).context("the peer's hello")?;
    hello.check().map_err(anyhow::Error::msg)?;
    writer.write_all(&encode(&Hello::ours()))?;
    writer.write_all(&encode(request))?;
    let reply: Reply = serde_json::from_slice(&frame(&mut reader)?).context("the MTA's reply")?;
    Ok(reply)
}

fn frame(reader: &mut BufReader<UnixStream>) -> anyhow::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_REPLY as u64)
        .read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        bail!("the MTA closed the connection (not allowed to control the queue?)");
    }
    Ok(line)
}

fn print(reply: Reply) -> anyhow::Result<()> {
    match reply {
        Reply::List { messages, .. } => print_list(&messages),
        Reply::Show {
            message, headers, ..
        } => {
            print_entry(&message);
            println!();
            print!("{headers}");
        }
        Reply::Scheduled { count, .. } => println!("{count} message(s) due for delivery now"),
        Reply::Deleted { .. } => println!("deleted"),
        Reply::Error { message, .. } => bail!("{message}"),
    }
    Ok(())
}

fn list_offline(config: &Config, why: &std::io::Error) -> anyhow::Result<()> {
    let dir = config.state_dir.join("queue");
    let messages = mta::control::scan(&dir, &Default::default()).with_context(|| {
        format!(
            "postern-mta is not reachable ({why}) and {} cannot be read",
            dir.display()
        )
    })?;
    println!(
        "postern-mta is not reachable ({why}); the MTA is probably not running: {} read \
         directly (no next-attempt times)",
        dir.display()
    );
    print_list(&messages);
    Ok(())
}

fn print_list(messages: &[Entry]) {
    for m in messages {
        print_entry(m);
        println!();
    }
    let bytes: u64 = messages.iter().map(|m| m.size).sum();
    println!(
        "-- {} message(s), {} KiB",
        messages.len(),
        bytes.div_ceil(1024)
    );
}

/// The `list` block of one message: id, size, arrival, sender; one line per recipient.
fn print_entry(m: &Entry) {
    let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
    println!(
        "{:<24} {:>9} {}  {sender}",
        m.queue_id,
        m.size,
        time(m.arrived)
    );
    for r in &m.recipients {
        let detail = match (r.state.as_str(), &r.reply) {
            ("failed", Some(reply)) => format!(" ({reply})"),
            ("pending", _) => pending_detail(m),
            _ => String::new(),
        };
        println!("    {:<10} {}{detail}", r.state, r.address);
    }
}

fn pending_detail(m: &Entry) -> String {
    let mut out = String::new();
    if let Some(e) = &m.last_error {
        out.push_str(&format!(" (attempts {}: {e})", m.attempts));
    }
    match m.next_attempt {
        Some(t) => out.push_str(&format!(" next attempt {}", time(t))),
        None if m.attempts > 0 => out.push_str(" attempt under way or not scheduled"),
        None => {}
    }
    out
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn time(secs: u64) -> String {
    let rem = secs % 86_400;
    let (y, m, d) = shared::date::civil_from_days((secs / 86_400) as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_795_512_600), "2026-11-24 09:30:00 UTC");
        assert_eq!(time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
