//! A traced QEMU as a live feed: its session's ring buffer read through tokio, each record
//! decoded and learnt from by the session, and the run ending when the QEMU does.

use std::io;

use tokio::io::unix::AsyncFd;

use crate::{
    ebpf::{
        loader::{next_ready, register_ring},
        probe_log::ProbeLog,
    },
    live::{Feed, FeedFuture, FeedItem, FeedStatus, Sink},
    qemu::session::QemuSession,
};

pub struct QemuFeed {
    session: AsyncFd<QemuSession>,
    /// We started this QEMU (its exit ends the run) rather than attached to it.
    launched: bool,
}

impl QemuFeed {
    /// Registers the session's ring buffer with the runtime (call it inside one).
    pub fn new(session: QemuSession, launched: bool) -> io::Result<Self> {
        Ok(Self {
            session: register_ring(session)?,
            launched,
        })
    }

    pub fn session(&self) -> &QemuSession {
        self.session.get_ref()
    }
}

impl Feed for QemuFeed {
    fn next_batch<'a>(&'a mut self, sink: Sink<'a>) -> FeedFuture<'a> {
        Box::pin(async move {
            next_ready(&mut self.session, None, |s: &mut QemuSession| {
                s.take(|ev| sink(FeedItem::Event(ev)))
            })
            .await?;
            Ok(FeedStatus::Open)
        })
    }

    fn drops(&self) -> u64 {
        self.session().drops()
    }

    fn alive(&mut self) -> anyhow::Result<bool> {
        let s = self.session.get_mut();
        if self.launched {
            Ok(s.try_exit()?.is_none())
        } else {
            // An attached QEMU that went away ends the session (try_exit reports it as an error).
            Ok(s.try_exit().is_ok())
        }
    }

    fn probe_log(&self) -> Option<&ProbeLog> {
        Some(self.session().probe_log())
    }
}
