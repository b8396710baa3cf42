//! The `cmdqv` application as a library, so integration tests and benches can drive its pieces:
//! the eBPF loader ([`ebpf`]), `cmdqv doctor` ([`doctor`]) and the live terminal UI ([`tui`]).

pub mod bench_probes;
pub mod doctor;
pub mod ebpf;
pub mod iommufd_fds;
pub mod live;
pub mod output;
pub mod qemu_cmd;
pub mod qemu_target;
pub mod sample_cmd;
pub mod sim_cmd;
pub mod tui;
pub mod tui_source;

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
