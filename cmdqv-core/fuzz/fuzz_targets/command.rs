//! Arbitrary command words: decoding never fails and re-encoding is stable.
#![no_main]
use cmdqv_core::command::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: [u64; 2]| {
    let c = Command::decode(data[0], data[1]);
    let [w0, w1] = c.encode();
    assert_eq!(Command::decode(w0, w1), c);
});
