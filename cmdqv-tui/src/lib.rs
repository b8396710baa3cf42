//! The `cmdqv` application as a library, so integration tests and benches can drive its pieces:
//! the subcommands ([`commands`]), the live runner every target shares ([`runner`]), the QEMU
//! session ([`qemu`]), the parts of the live pipeline ([`live`]), the eBPF loader ([`ebpf`]) and
//! the terminal UI ([`tui`]).
//!
//! Layers, each using only those after it: `commands` → `runner` → `qemu` → `tui` → `live` →
//! `ebpf` (the runner feeds the UI through its `SnapshotSource` interface; the UI only asks
//! `live` whether a stop signal came).

pub mod commands;
pub mod ebpf;
pub mod live;
pub mod qemu;
pub mod runner;
pub mod tui;

/// Register names for log lines: CMDQV offsets through the model's register map, SMMU offsets
/// through its SMMUv3 table.
pub fn reg_name(dev: cmdqv_core::event::Device, offset: u64) -> Option<String> {
    match dev {
        cmdqv_core::event::Device::Cmdqv => cmdqv_core::regs::decode(offset).map(|r| r.name()),
        cmdqv_core::event::Device::Smmu => {
            cmdqv_core::regs::smmu_reg_name(offset).map(str::to_string)
        }
    }
}
