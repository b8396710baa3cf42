//! SMMUv3 queue arithmetic: ring size from LOG2SIZE, index and wrap bit, empty/full, increment.
//!
//! A pointer for a ring of 2^n entries is `index` in bits \[n-1:0\] and the wrap bit at bit n
//! (../shared/reference/cmdqv-hw.md §7). Bits above the wrap bit are not part of the pointer: the
//! consumer ignores them in PROD and preserves them in CONS (QEMU's `queue_cons_incr` deposits only
//! the low n+1 bits), so CONS.ERR at \[30:24\] survives every increment.

/// Hardware maximum LOG2SIZE for VCMDQs and QEMU's SMMU_CMDQS (8 MiB ring of 16-byte entries).
pub const MAX_LOG2SIZE: u8 = 19;
/// Bytes per command-queue entry.
pub const ENTRY_BYTES: u64 = 16;

/// Geometry of one ring: its base address and log2 of its entry count.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Ring {
    /// Guest-physical address of entry 0.
    pub base: u64,
    /// log2(entries), already clamped to [`MAX_LOG2SIZE`].
    pub log2size: u8,
}

impl Ring {
    /// A ring with LOG2SIZE clamped the way QEMU does (values above 19 act as 19).
    pub fn new(base: u64, log2size: u32) -> Self {
        Self {
            base,
            log2size: log2size.min(MAX_LOG2SIZE as u32) as u8,
        }
    }
    /// Number of entries.
    #[inline]
    pub fn entries(&self) -> u32 {
        1 << self.log2size
    }
    /// Size of the ring in bytes.
    pub fn bytes(&self) -> u64 {
        ENTRY_BYTES << self.log2size
    }
    /// The wrap bit (bit n).
    #[inline]
    pub fn wrap_bit(&self) -> u32 {
        1 << self.log2size
    }
    /// Mask of the index bits \[n-1:0\].
    #[inline]
    pub fn idx_mask(&self) -> u32 {
        self.wrap_bit() - 1
    }
    /// Mask of index + wrap, bits \[n:0\].
    #[inline]
    pub fn ptr_mask(&self) -> u32 {
        (self.wrap_bit() << 1) - 1
    }
    #[inline]
    pub fn idx(&self, p: u32) -> u32 {
        p & self.idx_mask()
    }
    #[inline]
    pub fn wrap(&self, p: u32) -> bool {
        p & self.wrap_bit() != 0
    }
    /// Empty: same index and same wrap.
    #[inline]
    pub fn is_empty(&self, prod: u32, cons: u32) -> bool {
        (prod ^ cons) & self.ptr_mask() == 0
    }
    /// Full: same index, different wrap.
    #[inline]
    pub fn is_full(&self, prod: u32, cons: u32) -> bool {
        (prod ^ cons) & self.ptr_mask() == self.wrap_bit()
    }
    /// Entries waiting between cons and prod (0..=entries).
    #[inline]
    pub fn pending(&self, prod: u32, cons: u32) -> u32 {
        prod.wrapping_sub(cons) & self.ptr_mask()
    }
    /// `p + 1` in bits \[n:0\]; bits above (e.g. CONS.ERR) are preserved.
    #[inline]
    pub fn inc(&self, p: u32) -> u32 {
        let m = self.ptr_mask();
        (p & !m) | (p.wrapping_add(1) & m)
    }
    /// `p + k` in bits \[n:0\]; bits above are preserved.
    #[inline]
    pub fn add(&self, p: u32, k: u32) -> u32 {
        let m = self.ptr_mask();
        (p & !m) | (p.wrapping_add(k) & m)
    }
    /// Guest-physical address of the entry `p` points at, `None` if it overflows 64 bits.
    #[inline]
    pub fn entry_addr(&self, p: u32) -> Option<u64> {
        self.base.checked_add(self.idx(p) as u64 * ENTRY_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn clamps_log2size_to_19() {
        assert_eq!(Ring::new(0, 31).log2size, 19);
        assert_eq!(Ring::new(0, 19).entries(), 1 << 19);
        assert_eq!(Ring::new(0, 19).bytes(), 8 << 20);
        assert_eq!(Ring::new(0, 3).log2size, 3);
    }

    #[test]
    fn empty_full_and_wrap() {
        let r = Ring::new(0x1000, 2); // 4 entries
        assert!(r.is_empty(0, 0));
        assert!(r.is_full(4, 0)); // index 0, wrap set
        assert!(!r.is_empty(4, 0));
        assert_eq!(r.pending(4, 0), 4);
        assert_eq!(r.pending(1, 6), 3); // prod idx1 wrap0, cons idx2 wrap1
        assert_eq!(r.inc(3), 4);
        assert_eq!(r.inc(7), 0);
        // bits above the pointer are ignored by empty and kept by inc
        assert!(r.is_empty(0x100, 0));
        assert_eq!(r.inc(1 << 24 | 7), 1 << 24);
        assert_eq!(r.entry_addr(6), Some(0x1000 + 2 * 16));
        assert_eq!(Ring::new(u64::MAX - 8, 2).entry_addr(1), None);
    }

    #[test]
    fn log2size_zero_is_a_one_entry_ring() {
        let r = Ring::new(0, 0);
        assert!(r.is_empty(0, 0));
        assert!(r.is_full(1, 0));
        assert_eq!(r.inc(0), 1);
        assert_eq!(r.inc(1), 0);
        assert_eq!(r.idx(1), 0);
    }

    proptest! {
        #[test]
        fn pending_counts_increments(n in 0u32..=19, cons in any::<u32>(), k in 0u32..=(1 << 19)) {
            let r = Ring::new(0, n);
            let k = k % (r.entries() + 1);
            let prod = r.add(cons, k);
            prop_assert_eq!(r.pending(prod, cons), k);
            prop_assert_eq!(r.is_empty(prod, cons), k == 0);
            prop_assert_eq!(r.is_full(prod, cons), k == r.entries());
            prop_assert_eq!(prod & !r.ptr_mask(), cons & !r.ptr_mask());
        }
    }
}
