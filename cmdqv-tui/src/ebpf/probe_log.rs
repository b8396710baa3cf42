//! The receiving end of the probes' own diagnostics (aya-log): a failed `bpf_probe_read`, a
//! record dropped because the ring buffer was full. `aya_log::EbpfLogger` hands each message to
//! [`ProbeLog`], which counts it, keeps a bounded number for the summary's notes, and passes it
//! on to the process's `log` stream. The probes log only on rare paths, never per event.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

/// Messages kept until someone takes them; older ones beyond this are only counted.
const KEPT: usize = 32;

#[derive(Default)]
struct Book {
    total: u64,
    pending: VecDeque<String>,
}

/// A `log::Log` that counts and keeps the probes' messages; clones share one book.
#[derive(Clone, Default)]
pub struct ProbeLog(Arc<Mutex<Book>>);

impl ProbeLog {
    /// Messages received so far, whether taken or not.
    pub fn total(&self) -> u64 {
        self.book().total
    }

    /// The messages received since the last call (at most [`KEPT`]).
    pub fn take(&self) -> Vec<String> {
        self.book().pending.drain(..).collect()
    }

    /// A warning as a probe would send it (tests of what consumes the log).
    #[cfg(test)]
    pub(crate) fn warn(&self, target: &str, msg: std::fmt::Arguments<'_>) {
        log::Log::log(
            self,
            &log::Record::builder()
                .level(log::Level::Warn)
                .target(target)
                .args(msg)
                .build(),
        );
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl log::Log for ProbeLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        {
            let mut b = self.book();
            b.total += 1;
            if b.pending.len() < KEPT {
                b.pending.push_back(format!(
                    "{} {}: {}",
                    record.level(),
                    record.target(),
                    record.args()
                ));
            }
        }
        // Never installed as the global logger itself, so this cannot recurse.
        log::logger().log(record);
    }

    fn flush(&self) {
        log::logger().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_message_and_keeps_a_bounded_number() {
        let l = ProbeLog::default();
        for i in 0..(KEPT + 5) {
            l.warn("cmdqv_ebpf::qemu", format_args!("read {i} failed"));
        }
        assert_eq!(l.total(), (KEPT + 5) as u64);
        let got = l.clone().take();
        assert_eq!(got.len(), KEPT);
        assert_eq!(got[0], "WARN cmdqv_ebpf::qemu: read 0 failed");
        assert!(l.take().is_empty(), "taken once");
    }
}
