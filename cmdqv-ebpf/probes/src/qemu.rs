//! uprobes for a stock QEMU (memory_region_dispatch_*, address_space_rw) (in progress).
