//! The test binary's one log: a global `tracing` subscriber writing into memory, from which each
//! test picks its own lines (by the request ids it saw, or a marker only it logs).
//!
//! One subscriber for the whole binary, never one per test: a subscriber set per test
//! (`set_default`) misses events while other tests of the binary run in parallel (tracing caches
//! a callsite's interest process-wide).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything the binary logged (at `INFO` and above), in order.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The binary's log, installed as the global subscriber on first use.
    pub fn global() -> &'static Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            tracing::subscriber::set_global_default(
                tracing_subscriber::fmt()
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .finish(),
            )
            .expect("the test binary's global subscriber");
            logs
        })
    }

    /// What has been logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines logged so far that contain `marker`.
    pub fn lines_with(&self, marker: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(marker))
            .map(str::to_owned)
            .collect()
    }
}
