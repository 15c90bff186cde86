//! Benchmark: authd verifications per second through the real `auth.sock` of a running
//! `postern serve`, SHA512-CRYPT, without and with the positive cache. Prints figures; asserts
//! nothing. Build in release for meaningful numbers:
//!   cargo build --release --workspace && cargo run --release -p postern-tests --bin bench-authd
//! Options: `--seconds N` per phase (default 5), `--clients N` concurrent clients (default 8).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::Setup;
use shared::proto::auth::{AuthClient, Mechanism, VerifyOutcome};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = arg("--seconds", 5);
    let clients = arg("--clients", 8);
    println!(
        "authd verification benchmark: SHA512-CRYPT (5000 rounds), {clients} clients, {seconds}s per phase"
    );
    println!("binaries: {}", harness::bin_dir().display());
    for (label, ttl) in [("no cache", "0s"), ("cache", "1h")] {
        let rate = run_phase(ttl, clients, Duration::from_secs(seconds));
        println!("{label:>9}: {rate:>10.0} verifications/s");
    }
}

fn run_phase(cache_ttl: &str, clients: u64, length: Duration) -> f64 {
    let setup = Setup::new(&format!(
        "[auth]\ncache_ttl = \"{cache_ttl}\"\n\n[log]\nlevel = \"warn\"\n"
    ));
    let users = 16;
    for i in 0..users {
        setup.add_user(&format!("user{i}@example.test"), &format!("password-{i}"));
    }
    let server = setup.start();
    let socket = server.auth_socket();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    runtime.block_on(async {
        let client = Arc::new(AuthClient::new(socket));
        let mut tasks = Vec::new();
        for c in 0..clients {
            let client = client.clone();
            let count = count.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = c;
                while started.elapsed() < length {
                    let n = i % users;
                    let user = format!("user{n}@example.test");
                    let outcome = client
                        .verify(
                            Mechanism::Plain,
                            &user,
                            &format!("password-{n}"),
                            None,
                            "bench",
                        )
                        .await
                        .expect("authd answers");
                    assert!(matches!(outcome, VerifyOutcome::Ok { .. }), "{outcome:?}");
                    count.fetch_add(1, Ordering::Relaxed);
                    i += clients;
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    drop(server);
    count.load(Ordering::Relaxed) as f64 / elapsed
}
