//! The `cmdqv` application as a library, so integration tests and benches can drive its pieces:
//! the subcommands ([`commands`]), the live runner every target shares ([`runner`]), the QEMU
//! session ([`qemu`]), the parts of the live pipeline ([`live`]), the eBPF loader ([`ebpf`]) and
//! the terminal UI ([`tui`]).
//!
//! Layers, each using only those after it: `commands` → `fleet` → `runner` → `metrics` → `qemu` → `tui` →
//! `live` → `ebpf` (the runner feeds the UI through its `SnapshotSource` interface; the UI only asks
//! `live` whether a stop signal came, and hands `live`'s log stream the terminal). [`kvm`], the sim
//! VMM's KVM guest engine, is used by `commands` alone and uses only cmdqv-core. [`schema`], the JSON
//! Schema of every JSON record, sits above `commands`, whose types it describes.

pub mod commands;
pub mod ebpf;
pub mod fleet;
pub mod kvm;
pub mod live;
pub mod metrics;
pub mod qemu;
pub mod runner;
pub mod schema;
pub mod tui;

pub use live::reg_name::reg_name;

/// `cmdqv --version`: the crate version and the commit it was built from (`git describe`, or
/// `unknown` when built without git).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CMDQV_GIT_COMMIT"),
    ")"
);
