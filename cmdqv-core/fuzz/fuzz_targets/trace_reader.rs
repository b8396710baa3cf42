//! Fuzz the trace-file reader: any bytes, as a whole file and as records behind a valid
//! header (current and version-1 formats), must give records or typed errors — never a panic,
//! a hang or unbounded memory.
//!
//! Run: `cd cmdqv-core/fuzz && cargo +nightly fuzz run trace_reader`
#![no_main]

use cmdqv_core::event::Source;
use cmdqv_core::record::{
    TraceMeta, TraceReader, TraceWriter, VERSION_1, decode_body, replay_reader, v1,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // 1. The bytes as a whole file (header included).
    if let Ok(r) = TraceReader::new(data) {
        for rec in r.take(10_000) {
            let _ = rec;
        }
    }

    // 2. The bytes as the records of a file with a valid header, through replay (which feeds
    //    the collector and builds a summary).
    let mut file = TraceWriter::new(Vec::new(), &TraceMeta::new(Source::Ebpf, "fuzz"))
        .and_then(|w| Ok(w.finish()?))
        .expect("writing a header to memory cannot fail");
    file.extend_from_slice(data);
    if let Ok(r) = TraceReader::new(&file[..]) {
        let _ = replay_reader(r, None);
    }
    // The same behind a version-1 header (the legacy reader).
    file[8..10].copy_from_slice(&VERSION_1.to_le_bytes());
    if let Ok(r) = TraceReader::new(&file[..]) {
        let _ = replay_reader(r, None);
    }

    // 3. The bytes as one record body, of either version.
    let _ = decode_body(data);
    let _ = v1::decode_body(data);
});
