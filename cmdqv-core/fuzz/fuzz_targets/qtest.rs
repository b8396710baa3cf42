//! Arbitrary qtest text against the model's qtest server: never a panic, one reply per line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cmdqv_core::qtest::fuzz_lines(data);
});
