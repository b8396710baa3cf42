//! The `qemu` target's process side: a QEMU session (launch paused or attach, QMP, pid, exit)
//! over the QEMU probe plan of `ebpf::qemu_plan`, and the live feed that reads it.

pub mod feed;
pub mod qmp;
pub mod session;

pub use crate::ebpf::qemu_plan::QemuOptions;
pub use qmp::{qmp_cont, spawn_paused};
pub use session::{QemuSession, SessionCounts};
