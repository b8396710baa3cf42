//! What the live runner collects from: a [`Feed`] of raw ABI records or decoded events, read
//! through the async runtime, plus the eBPF ring buffer as a feed ([`TracerFeed`]).

use std::{future::Future, io, pin::Pin};

use anyhow::Result;
use cmdqv_core::{analysis::Summary, event::Event};

use crate::ebpf::{AsyncTracer, Tracer, probe_log::ProbeLog};

/// One item from a feed.
pub enum FeedItem<'a> {
    /// A raw eBPF ABI record (decoded by the runner, length-checked).
    Raw(&'a [u8]),
    Event(Event),
}

/// Whether a feed can produce more.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FeedStatus {
    Open,
    Ended,
}

/// Where a feed hands its items.
pub type Sink<'a> = &'a mut dyn FnMut(FeedItem<'_>);

/// The future of one [`Feed::next_batch`].
pub type FeedFuture<'a> = Pin<Box<dyn Future<Output = Result<FeedStatus>> + 'a>>;

/// A source of events for the live runner.
pub trait Feed {
    /// Waits for the next items and hands each to `sink`. Must be cancel-safe: the runner drops
    /// the future whenever a timer, a control message or a signal comes first, and nothing may
    /// be lost or half-delivered then.
    fn next_batch<'a>(&'a mut self, sink: Sink<'a>) -> FeedFuture<'a>;

    /// Cumulative events lost before they reached us (ring buffer full, pipe overflow).
    fn drops(&self) -> u64;

    /// Whether the traced process is still there (checked on the runner's housekeeping tick).
    fn alive(&mut self) -> Result<bool> {
        Ok(true)
    }

    /// The probes' own diagnostics, for a feed that reads eBPF probes.
    fn probe_log(&self) -> Option<&ProbeLog> {
        None
    }

    /// Adds what the target reported about itself at its end to the final summary.
    fn amend_final(&mut self, _summary: &mut Summary) {}

    /// Adds what the feed itself measured so far to a live snapshot (before the UI gets it).
    fn amend_live(&self, _summary: &mut Summary) {}
}

/// Real eBPF probes, their ring buffer read through tokio.
pub struct TracerFeed(AsyncTracer);

impl TracerFeed {
    /// Registers the tracer's ring buffer with the runtime (call it inside one).
    pub fn new(t: Tracer) -> io::Result<Self> {
        Ok(Self(t.into_async()?))
    }
}

impl Feed for TracerFeed {
    fn next_batch<'a>(&'a mut self, sink: Sink<'a>) -> FeedFuture<'a> {
        Box::pin(async move {
            self.0.next_batch(|rec| sink(FeedItem::Raw(rec))).await?;
            Ok(FeedStatus::Open)
        })
    }

    fn drops(&self) -> u64 {
        self.0.get_ref().drops()
    }

    fn probe_log(&self) -> Option<&ProbeLog> {
        Some(self.0.get_ref().probe_log())
    }
}
