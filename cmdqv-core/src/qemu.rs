//! Tracing a real QEMU: trace-log parsing, binary symbol discovery, probe-set choice (in progress).
