//! Length-prefixed ABI records read from a pipe (the sim VMM's in-process fallback). A reader
//! task frames them into a bounded channel: when the collector falls behind, records are counted
//! as dropped, never buffered without bound, and the VMM never waits on us.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, BufReader},
    sync::mpsc::{self, error::TrySendError},
};

use crate::live::feed::{Feed, FeedFuture, FeedItem, FeedStatus, Sink};

/// Capacity of the pipe feed's channel, in records.
pub const PIPE_CHANNEL_CAP: usize = 1 << 16;

/// Longest record the framing accepts; anything longer means the framing is lost.
const MAX_RECORD: usize = 4096;

pub struct PipeFeed {
    rx: mpsc::Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl PipeFeed {
    /// Starts the reader task on the current runtime.
    pub fn spawn<R: AsyncRead + Unpin + Send + 'static>(reader: R) -> Self {
        let (tx, rx) = mpsc::channel(PIPE_CHANNEL_CAP);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(read_frames(reader, tx, dropped.clone()));
        Self { rx, dropped }
    }
}

/// Reads frames until the pipe closes, the framing is lost or the feed is gone.
async fn read_frames<R: AsyncRead + Unpin>(
    reader: R,
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
) {
    let mut r = BufReader::with_capacity(1 << 16, reader);
    let mut len = [0u8; 4];
    while r.read_exact(&mut len).await.is_ok() {
        let n = u32::from_le_bytes(len) as usize;
        if n > MAX_RECORD {
            break; // framing lost: stop rather than misread everything after
        }
        let mut buf = vec![0u8; n];
        if r.read_exact(&mut buf).await.is_err() {
            break;
        }
        match tx.try_send(buf) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Closed(_)) => break,
        }
    }
}

impl Feed for PipeFeed {
    fn next_batch<'a>(&'a mut self, sink: Sink<'a>) -> FeedFuture<'a> {
        Box::pin(async move {
            let Some(rec) = self.rx.recv().await else {
                // The reader stopped and everything it delivered has been taken.
                return Ok(FeedStatus::Ended);
            };
            sink(FeedItem::Raw(&rec));
            // What is already queued, but no more: a fast writer must not keep us here.
            for _ in 1..PIPE_CHANNEL_CAP {
                let Ok(rec) = self.rx.try_recv() else { break };
                sink(FeedItem::Raw(&rec));
            }
            Ok(FeedStatus::Open)
        })
    }

    fn drops(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_feed_reads_framed_records_and_ends() {
        let mut bytes = Vec::new();
        for i in 0..3u8 {
            bytes.extend(4u32.to_le_bytes());
            bytes.extend([i; 4]);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (got, feed) = rt.block_on(async {
            let mut feed = PipeFeed::spawn(std::io::Cursor::new(bytes));
            let mut got = Vec::new();
            for _ in 0..50 {
                let st = feed
                    .next_batch(&mut |it| {
                        if let FeedItem::Raw(b) = it {
                            got.push(b.to_vec())
                        }
                    })
                    .await
                    .unwrap();
                if st == FeedStatus::Ended {
                    break;
                }
            }
            (got, feed)
        });
        assert_eq!(got, vec![vec![0; 4], vec![1; 4], vec![2; 4]]);
        assert_eq!(feed.drops(), 0);
    }
}
