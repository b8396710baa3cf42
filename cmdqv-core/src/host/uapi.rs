//! iommufd uapi (include/uapi/linux/iommufd.h, 6.17+ numbering) as `#[repr(C)]` structs.
//!
//! Every layout is pinned by tests to the tables in ../shared/reference/cmdqv-hw.md §11: size,
//! field offsets and ioctl numbers. Each ioctl passes a struct whose first u32 is its size.

/// `_IO(';', nr)`: iommufd ioctls carry no size/direction bits.
pub const fn iommufd_ioctl(nr: u32) -> u32 {
    (0x3b << 8) | nr
}

pub const IOMMU_DESTROY: u32 = iommufd_ioctl(0x80);
pub const IOMMU_HWPT_ALLOC: u32 = iommufd_ioctl(0x89);
pub const IOMMU_GET_HW_INFO: u32 = iommufd_ioctl(0x8a);
pub const IOMMU_HWPT_INVALIDATE: u32 = iommufd_ioctl(0x8d);
pub const IOMMU_FAULT_QUEUE_ALLOC: u32 = iommufd_ioctl(0x8e);
pub const IOMMU_IOAS_MAP_FILE: u32 = iommufd_ioctl(0x8f);
pub const IOMMU_VIOMMU_ALLOC: u32 = iommufd_ioctl(0x90);
pub const IOMMU_VDEVICE_ALLOC: u32 = iommufd_ioctl(0x91);
pub const IOMMU_IOAS_CHANGE_PROCESS: u32 = iommufd_ioctl(0x92);
pub const IOMMU_VEVENTQ_ALLOC: u32 = iommufd_ioctl(0x93);
pub const IOMMU_HW_QUEUE_ALLOC: u32 = iommufd_ioctl(0x94);

/// enum iommu_viommu_type
pub const IOMMU_VIOMMU_TYPE_DEFAULT: u32 = 0;
pub const IOMMU_VIOMMU_TYPE_ARM_SMMUV3: u32 = 1;
pub const IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV: u32 = 2;
/// enum iommu_hw_queue_type
pub const IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV: u32 = 1;
/// enum iommu_veventq_type
pub const IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV: u32 = 2;
/// enum iommu_hw_info_type
pub const IOMMU_HW_INFO_TYPE_ARM_SMMUV3: u32 = 2;
pub const IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV: u32 = 3;
/// iommufd_hw_info_flags
pub const IOMMU_HW_INFO_FLAG_INPUT_TYPE: u32 = 1;
/// iommu_veventq_flag
pub const IOMMU_VEVENTQ_FLAG_LOST_EVENTS: u32 = 1;
/// iommu_hwpt_invalidate_data_type
pub const IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3: u32 = 1;

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuDestroy {
    pub size: u32,
    pub id: u32,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuViommuAlloc {
    pub size: u32,
    pub flags: u32,
    pub type_: u32,
    pub dev_id: u32,
    pub hwpt_id: u32,
    pub out_viommu_id: u32,
    pub data_len: u32,
    pub __reserved: u32,
    pub data_uptr: u64,
}

/// Driver data of a Tegra241 CMDQV vIOMMU (both fields are outputs; data_len must be exactly 16).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuViommuTegra241Cmdqv {
    pub out_vintf_mmap_offset: u64,
    pub out_vintf_mmap_length: u64,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuHwQueueAlloc {
    pub size: u32,
    pub flags: u32,
    pub viommu_id: u32,
    pub type_: u32,
    pub index: u32,
    pub out_hw_queue_id: u32,
    pub nesting_parent_iova: u64,
    pub length: u64,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuVeventqAlloc {
    pub size: u32,
    pub flags: u32,
    pub viommu_id: u32,
    pub type_: u32,
    pub veventq_depth: u32,
    pub out_veventq_id: u32,
    pub out_veventq_fd: u32,
    pub __reserved: u32,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommufdVeventHeader {
    pub flags: u32,
    pub sequence: u32,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuVeventTegra241Cmdqv {
    pub lvcmdq_err_map: [u64; 2],
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuHwptInvalidate {
    pub size: u32,
    pub hwpt_id: u32,
    pub data_uptr: u64,
    pub data_type: u32,
    pub entry_len: u32,
    pub entry_num: u32,
    pub __reserved: u32,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuHwInfo {
    pub size: u32,
    pub flags: u32,
    pub dev_id: u32,
    pub data_len: u32,
    pub data_uptr: u64,
    /// in_data_type / out_data_type (union).
    pub data_type: u32,
    pub out_max_pasid_log2: u8,
    pub __reserved: [u8; 3],
    pub out_capabilities: u64,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuHwInfoTegra241Cmdqv {
    pub flags: u32,
    pub version: u8,
    pub log2vcmdqs: u8,
    pub log2vsids: u8,
    pub __reserved: u8,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuVdeviceAlloc {
    pub size: u32,
    pub viommu_id: u32,
    pub dev_id: u32,
    pub out_vdevice_id: u32,
    pub virt_id: u64,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuHwptAlloc {
    pub size: u32,
    pub flags: u32,
    pub dev_id: u32,
    pub pt_id: u32,
    pub out_hwpt_id: u32,
    pub __reserved: u32,
    pub data_type: u32,
    pub data_len: u32,
    pub data_uptr: u64,
    pub fault_id: u32,
    pub __reserved2: u32,
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn ioctl_numbers_match_the_6_17_uapi() {
        assert_eq!(IOMMU_DESTROY, 0x3b80);
        assert_eq!(IOMMU_HWPT_ALLOC, 0x3b89);
        assert_eq!(IOMMU_GET_HW_INFO, 0x3b8a);
        assert_eq!(IOMMU_HWPT_INVALIDATE, 0x3b8d);
        assert_eq!(IOMMU_FAULT_QUEUE_ALLOC, 0x3b8e);
        assert_eq!(IOMMU_IOAS_MAP_FILE, 0x3b8f);
        assert_eq!(IOMMU_VIOMMU_ALLOC, 0x3b90);
        assert_eq!(IOMMU_VDEVICE_ALLOC, 0x3b91);
        assert_eq!(IOMMU_IOAS_CHANGE_PROCESS, 0x3b92);
        assert_eq!(IOMMU_VEVENTQ_ALLOC, 0x3b93);
        assert_eq!(IOMMU_HW_QUEUE_ALLOC, 0x3b94);
    }

    #[test]
    // nix's request code is a c_ulong on glibc and a c_int on musl: the cast is not a no-op
    // everywhere.
    #[allow(clippy::unnecessary_cast)]
    fn request_codes_are_what_nix_computes_for_io() {
        // iommufd.rs hands these codes to nix's "bad" ioctl wrappers: they must be _IO(';', nr).
        for nr in 0x80..=0x94u32 {
            assert_eq!(
                iommufd_ioctl(nr) as u64,
                nix::request_code_none!(b';', nr) as u64,
                "{nr:#x}"
            );
        }
    }

    #[test]
    fn viommu_alloc_layout() {
        assert_eq!(size_of::<IommuViommuAlloc>(), 40);
        assert_eq!(offset_of!(IommuViommuAlloc, flags), 4);
        assert_eq!(offset_of!(IommuViommuAlloc, type_), 8);
        assert_eq!(offset_of!(IommuViommuAlloc, dev_id), 12);
        assert_eq!(offset_of!(IommuViommuAlloc, hwpt_id), 16);
        assert_eq!(offset_of!(IommuViommuAlloc, out_viommu_id), 20);
        assert_eq!(offset_of!(IommuViommuAlloc, data_len), 24);
        assert_eq!(offset_of!(IommuViommuAlloc, __reserved), 28);
        assert_eq!(offset_of!(IommuViommuAlloc, data_uptr), 32);
        assert_eq!(size_of::<IommuViommuTegra241Cmdqv>(), 16);
        assert_eq!(
            offset_of!(IommuViommuTegra241Cmdqv, out_vintf_mmap_length),
            8
        );
    }

    #[test]
    fn hw_queue_alloc_layout() {
        assert_eq!(size_of::<IommuHwQueueAlloc>(), 40);
        assert_eq!(offset_of!(IommuHwQueueAlloc, viommu_id), 8);
        assert_eq!(offset_of!(IommuHwQueueAlloc, type_), 12);
        assert_eq!(offset_of!(IommuHwQueueAlloc, index), 16);
        assert_eq!(offset_of!(IommuHwQueueAlloc, out_hw_queue_id), 20);
        assert_eq!(offset_of!(IommuHwQueueAlloc, nesting_parent_iova), 24);
        assert_eq!(offset_of!(IommuHwQueueAlloc, length), 32);
    }

    #[test]
    fn veventq_layouts() {
        assert_eq!(size_of::<IommuVeventqAlloc>(), 32);
        assert_eq!(offset_of!(IommuVeventqAlloc, viommu_id), 8);
        assert_eq!(offset_of!(IommuVeventqAlloc, type_), 12);
        assert_eq!(offset_of!(IommuVeventqAlloc, veventq_depth), 16);
        assert_eq!(offset_of!(IommuVeventqAlloc, out_veventq_id), 20);
        assert_eq!(offset_of!(IommuVeventqAlloc, out_veventq_fd), 24);
        assert_eq!(offset_of!(IommuVeventqAlloc, __reserved), 28);
        assert_eq!(size_of::<IommufdVeventHeader>(), 8);
        assert_eq!(size_of::<IommuVeventTegra241Cmdqv>(), 16);
    }

    #[test]
    fn hwpt_invalidate_and_info_layouts() {
        assert_eq!(size_of::<IommuHwptInvalidate>(), 32);
        assert_eq!(offset_of!(IommuHwptInvalidate, data_uptr), 8);
        assert_eq!(offset_of!(IommuHwptInvalidate, data_type), 16);
        assert_eq!(offset_of!(IommuHwptInvalidate, entry_len), 20);
        assert_eq!(offset_of!(IommuHwptInvalidate, entry_num), 24);
        assert_eq!(offset_of!(IommuHwptInvalidate, __reserved), 28);
        assert_eq!(size_of::<IommuHwInfo>(), 40);
        assert_eq!(offset_of!(IommuHwInfo, data_uptr), 16);
        assert_eq!(offset_of!(IommuHwInfo, data_type), 24);
        assert_eq!(offset_of!(IommuHwInfo, out_max_pasid_log2), 28);
        assert_eq!(offset_of!(IommuHwInfo, out_capabilities), 32);
        assert_eq!(size_of::<IommuHwInfoTegra241Cmdqv>(), 8);
        assert_eq!(offset_of!(IommuHwInfoTegra241Cmdqv, version), 4);
        assert_eq!(offset_of!(IommuHwInfoTegra241Cmdqv, log2vcmdqs), 5);
        assert_eq!(offset_of!(IommuHwInfoTegra241Cmdqv, log2vsids), 6);
        assert_eq!(size_of::<IommuVdeviceAlloc>(), 24);
        assert_eq!(offset_of!(IommuVdeviceAlloc, virt_id), 16);
        assert_eq!(size_of::<IommuHwptAlloc>(), 48);
        assert_eq!(offset_of!(IommuHwptAlloc, data_type), 24);
        assert_eq!(offset_of!(IommuHwptAlloc, data_uptr), 32);
        assert_eq!(offset_of!(IommuHwptAlloc, fault_id), 40);
        assert_eq!(size_of::<IommuDestroy>(), 8);
    }
}
