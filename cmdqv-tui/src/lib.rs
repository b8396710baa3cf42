//! The `cmdqv` application as a library, so integration tests and benches can drive its pieces:
//! the eBPF loader ([`ebpf`]), `cmdqv doctor` ([`doctor`]) and the live terminal UI ([`tui`]).

pub mod doctor;
pub mod ebpf;
pub mod live;
pub mod qemu_target;
pub mod tui;
#[doc(hidden)]
pub mod tui_glue;
