//! Register names for the collector's log lines, for every live target and replay.

use cmdqv_core::event::Device;

/// CMDQV offsets through the model's register map, SMMU offsets through its SMMUv3 table.
pub fn reg_name(dev: Device, offset: u64) -> Option<String> {
    match dev {
        Device::Cmdqv => cmdqv_core::regs::decode(offset).map(|r| r.name()),
        Device::Smmu => cmdqv_core::regs::smmu_reg_name(offset).map(str::to_string),
    }
}
