//! Where the sim's KVM guest sees the devices and its own areas (guest-physical, below 4 GiB:
//! the guest runs without paging).

use cmdqv_core::{regs, sim::driver::Dev};

/// The SMMU's register page (trapped).
pub const SMMU_GPA: u64 = 0x0900_0000;
pub const SMMU_LEN: u64 = 0x2_0000;
/// The CMDQV's registers (trapped, but for a hardware-backed VINTF page0).
pub const CMDQV_GPA: u64 = 0x1000_0000;
pub const CMDQV_LEN: u64 = 0x100_0000;
/// VINTF0's logical page0, where the host page is mapped when it backs every LVCMDQ used.
pub const VINTF0_PAGE0_GPA: u64 = CMDQV_GPA + regs::VINTF_PAGE0;
/// The aarch64 guest's pacing page (no memslot, no device: every store there exits).
pub const PACING_GPA: u64 = 0x0a00_0000;
/// The guest program, and the per-vCPU areas after it (offsets into guest RAM).
pub const CODE_OFF: u64 = 0x300_0000;
pub const AREA_OFF: u64 = 0x300_1000;
pub const AREA_STRIDE: u64 = 0x1000;
pub const LAT_OFF: u64 = 0x310_0000;
pub const LAT_ENTRIES: u32 = 1 << 16;

/// Which device a guest-physical MMIO address falls in, and the offset in it.
pub fn device_at(addr: u64) -> Option<(Dev, u64)> {
    if (SMMU_GPA..SMMU_GPA + SMMU_LEN).contains(&addr) {
        Some((Dev::Smmu, addr - SMMU_GPA))
    } else if (CMDQV_GPA..CMDQV_GPA + CMDQV_LEN).contains(&addr) {
        Some((Dev::Cmdqv, addr - CMDQV_GPA))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_addresses_map_to_devices_and_the_rest_is_wild() {
        assert_eq!(device_at(SMMU_GPA + 0x98), Some((Dev::Smmu, 0x98)));
        assert_eq!(
            device_at(VINTF0_PAGE0_GPA + 0x80),
            Some((Dev::Cmdqv, regs::VINTF_PAGE0 + 0x80))
        );
        assert_eq!(device_at(SMMU_GPA + SMMU_LEN), None);
        assert_eq!(device_at(0xfee0_0000), None);
        assert_eq!(
            VINTF0_PAGE0_GPA % 0x1_0000,
            0,
            "a memslot must be page-aligned"
        );
    }
}
