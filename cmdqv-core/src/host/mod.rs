//! Host backends (in progress).
