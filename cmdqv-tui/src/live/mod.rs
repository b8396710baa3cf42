//! The parts of the live pipeline every target shares: a [`Feed`] (eBPF ring buffer, the sim
//! VMM's pipe, a QEMU session), the stop signals, the recorder, the headless output and the
//! flags that choose between them. The runner module puts them together.
//!
//! Nothing here knows the terminal UI; the UI only asks [`interrupted`] whether a stop signal
//! came.

pub mod feed;
pub mod identity;
pub mod logging;
pub mod options;
pub mod output;
pub mod pipe_feed;
pub mod recorder;
pub mod reg_name;
pub mod signals;

pub use feed::{Feed, FeedFuture, FeedItem, FeedStatus, Sink, TracerFeed};
pub use options::{LiveOptions, OutputArgs, parse_duration};
pub use signals::interrupted;
