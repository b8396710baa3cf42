//! Batch correlation: a guest doorbell (PROD write) closed by the consumption pass whose CONS
//! reaches that PROD, with bounded memory. The collector and the Perfetto export both use it.

use std::collections::VecDeque;

/// Doorbells waiting for their CONS, per queue; older ones are given up when exceeded.
pub const PENDING_CAP: usize = 64;

/// A batch the correlator closed: doorbell(s) → CONS reaching the doorbell's PROD.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Timestamp of the oldest doorbell this completion covers.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Command events seen since the previous completion.
    pub commands: u64,
    /// Doorbells (PROD writes) covered; each one is one latency sample.
    pub doorbells: u32,
}

/// Guest doorbell → CONS reaching that PROD, for one queue, with bounded memory.
///
/// Doorbells are kept in order; a `Consumed` with CONS = c closes every pending doorbell up to
/// the one whose PROD equals c, or all of them when the pass drained the queue (CONS = PROD).
/// A `Consumed` that matches nothing (no doorbell seen, trace started mid-batch) closes nothing.
#[derive(Clone, Debug, Default)]
pub struct BatchTracker {
    pending: VecDeque<(u64, u64)>,
    commands: u64,
    /// Doorbells given up because more than [`PENDING_CAP`] were waiting.
    pub abandoned: u64,
}

impl BatchTracker {
    /// A guest PROD write (`prod`, with `cons` at the time). Writes that add no work (PROD equal
    /// to CONS or to the previous PROD) do not open a batch.
    pub fn doorbell(&mut self, ts_ns: u64, prod: u64, cons: u64) {
        if prod == cons || self.pending.back().is_some_and(|&(_, p)| p == prod) {
            return;
        }
        if self.pending.len() == PENDING_CAP {
            self.pending.pop_front();
            self.abandoned += 1;
        }
        self.pending.push_back((ts_ns, prod));
    }

    /// A command was consumed.
    pub fn command(&mut self) {
        self.commands += 1;
    }

    /// A consumption pass ended with `cons`, `prod`. Calls `latency(ns)` for each closed doorbell
    /// and returns the batch, if any closed.
    pub fn consumed(
        &mut self,
        ts_ns: u64,
        cons: u64,
        prod: u64,
        mut latency: impl FnMut(u64),
    ) -> Option<Batch> {
        let upto = if cons == prod {
            self.pending.len()
        } else {
            match self.pending.iter().rposition(|&(_, p)| p == cons) {
                Some(i) => i + 1,
                None => 0,
            }
        };
        if upto == 0 {
            if cons == prod {
                // Drained with nothing pending: these commands belong to no visible batch.
                self.commands = 0;
            }
            return None;
        }
        let start_ns = self.pending[0].0;
        for (t, _) in self.pending.drain(..upto) {
            latency(ts_ns.saturating_sub(t));
        }
        let commands = std::mem::take(&mut self.commands);
        Some(Batch {
            start_ns,
            end_ns: ts_ns,
            commands,
            doorbells: upto as u32,
        })
    }

    /// The queue was disabled or reset: nothing pending can complete any more.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.commands = 0;
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
