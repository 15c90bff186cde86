//! Logging set-up shared by every process: tracing to journald when started by systemd
//! (`JOURNAL_STREAM` set), else one line per event on stderr. Client-supplied strings are
//! logged with `{:?}` by the callers; secrets are never logged.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Installs the global subscriber. `level` is the configured level; `POSTERN_LOG` (tracing
/// filter syntax) overrides it. Safe to call twice (the second call does nothing).
pub fn init(process: &str, level: &str) {
    let filter = std::env::var("POSTERN_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let journald = journald.with_syslog_identifier(process.to_string());
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(journald)
            .try_init();
        return;
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_timer(TimeAndName(process.to_string()))
        .compact();
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
}

/// Puts the process name after the time on every stderr line, so the interleaved output of
/// the supervisor and its children can be told apart.
struct TimeAndName(String);

impl tracing_subscriber::fmt::time::FormatTime for TimeAndName {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(w)?;
        write!(w, " {}[{}]", self.0, std::process::id())
    }
}
