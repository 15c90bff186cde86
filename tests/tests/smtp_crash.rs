//! The durability rule under fire (ARCHITECTURE §6): concurrent SMTP sessions while
//! postern-mta and postern-mda are killed with SIGKILL at random moments. Every message that
//! received its 250 must end up in its Maildir; duplicates (delivered, but the 250 was lost and
//! the client sent again) are allowed and counted, losses are not.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::*;
use nix::sys::signal::Signal;

const USERS: [&str; 3] = ["u1@example.test", "u2@example.test", "u3@example.test"];
const KILLS: usize = 24;

/// Sends one message on a fresh connection; `Ok(true)` when the 250 after DATA was read.
fn send_one(addr: std::net::SocketAddr, rcpt: &str, subject: &str) -> std::io::Result<bool> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut reply = || -> std::io::Result<String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line);
            }
        }
    };
    if !reply()?.starts_with("220") {
        return Ok(false);
    }
    w.write_all(b"EHLO crash\r\n")?;
    reply()?;
    w.write_all(format!("MAIL FROM:<s@elsewhere.net>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes())?;
    for _ in 0..3 {
        reply()?;
    }
    w.write_all(format!("Subject: {subject}\r\n\r\nbody of {subject}\r\nend\r\n.\r\n").as_bytes())?;
    let done = reply()?.starts_with("250");
    let _ = w.write_all(b"QUIT\r\n");
    Ok(done)
}

/// Subjects found in a user's Maildir, with how often each occurs.
fn delivered(server: &Server, user: &str) -> HashMap<String, usize> {
    let (local, domain) = user.split_once('@').unwrap();
    let mut found = HashMap::new();
    for sub in ["new", "cur"] {
        let dir = server
            .setup()
            .path(&format!("state/mail/{domain}/{local}/{sub}"));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(
                text.ends_with("\nend\n"),
                "a half-written message in {}: {text:?}",
                entry.path().display()
            );
            if let Some(subject) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                *found.entry(subject.to_string()).or_insert(0) += 1;
            }
        }
    }
    found
}

#[test]
fn no_acknowledged_message_is_lost_when_mta_and_mda_are_killed() {
    let setup = Setup::new(
        "[supervisor]\nrestart_delay = \"50ms\"\nrestart_delay_max = \"200ms\"\n\n[queue]\nretry_min = \"200ms\"\nretry_max = \"1s\"\n\n[limits]\nconnections_per_ip = 100\n\n[log]\nlevel = \"warn\"\n",
    );
    for u in USERS {
        setup.add_user(u, "pw");
    }
    let server = setup.start();
    let addr = server.setup().addr("smtp");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|t| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let rcpt = USERS[n % USERS.len()];
                    let subject = format!("crash-{t}-{n}");
                    match send_one(addr, rcpt, &subject) {
                        Ok(true) => {
                            acked.lock().unwrap().push((rcpt.to_string(), subject));
                            n += 1;
                        }
                        // Refused or cut off: not acknowledged; try again with a new subject.
                        _ => {
                            n += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut kills = 0;
    while kills < KILLS && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100 + (rand_u64() % 250)));
        let victim = if kills % 2 == 0 {
            "postern-mta"
        } else {
            "postern-mda"
        };
        if let Some((pid, _)) = server.children().into_iter().find(|(_, n)| n == victim)
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).is_ok()
        {
            kills += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(kills >= 20, "only {kills} kills");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "too few messages got through to prove anything: {}",
        acked.len()
    );
    // Everything acknowledged must arrive (after restarts the queue is recovered).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (lost, duplicates) = loop {
        let found: HashMap<&str, HashMap<String, usize>> =
            USERS.iter().map(|u| (*u, delivered(&server, u))).collect();
        let lost: Vec<&(String, String)> = acked
            .iter()
            .filter(|(u, s)| !found[u.as_str()].contains_key(s))
            .collect();
        let duplicates: usize = found.values().flat_map(|m| m.values()).map(|n| n - 1).sum();
        if lost.is_empty() || Instant::now() > deadline {
            break (lost.into_iter().cloned().collect::<Vec<_>>(), duplicates);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "crash test: {kills} kills, {} messages acknowledged, {} lost, {duplicates} duplicates",
        acked.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but lost: {lost:?}\n{}",
        server.log_text()
    );
}

fn rand_u64() -> u64 {
    let mut buf = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    u64::from_ne_bytes(buf)
}
