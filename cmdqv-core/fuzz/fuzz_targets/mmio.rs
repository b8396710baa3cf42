//! Arbitrary MMIO sequences + guest memory contents against the CMDQV model
//! (see `cmdqv_core::model::fuzz_mmio` for the byte layout and the invariants checked).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cmdqv_core::model::fuzz_mmio(data);
});
