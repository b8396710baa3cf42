//! The SMMUv3 main register page (page0; QEMU aliases page1 onto it) as one table, in the manner
//! of QEMU's `smmuv3-internal.h` REG32/REG64 + FIELD declarations: every register once, with its
//! name, offset, width, access, reset value and write mask.
//!
//! Everything else derives from [`TABLE`]: the offset constants ([`CR0`], [`CMDQ_PROD`], …), the
//! typed [`Reg`], the decoder ([`decode`], page1 alias and the upper words of 64-bit registers
//! included), the names the tracer shows ([`reg_name`]) and the device's dispatch in
//! `crate::smmu` (read-only writes refused, write masks applied, reset values loaded).
//! Reset values are QEMU's (`smmuv3_init_regs`, stage "nested").

/// QEMU decodes the main page with offset bit 16 ignored: page1 aliases page0.
pub const PAGE1_ALIAS: u64 = 0x10000;
/// Size of the MMIO region the device answers (page0 + its page1 alias).
pub const MMIO_SIZE: u64 = 0x20000;

/// CR0 / CR0ACK fields.
pub const CR0_SMMUEN: u32 = 1 << 0;
pub const CR0_PRIQEN: u32 = 1 << 1;
pub const CR0_EVENTQEN: u32 = 1 << 2;
pub const CR0_CMDQEN: u32 = 1 << 3;
pub const CR0_ATSCHK: u32 = 1 << 4;
pub const CR0_WRITABLE: u32 = 0x1f;
/// CR0 bits CR0ACK never reflects (QEMU `SMMU_CR0_RESERVED`).
pub const CR0_RESERVED: u32 = 0xffff_fc20;
/// IRQ_CTRL.GERROR_IRQEN.
pub const IRQ_CTRL_GERROR_IRQEN: u32 = 1 << 0;
/// GBPA.UPDATE: a write takes effect only with it set, and it reads back clear once done.
pub const GBPA_UPDATE: u32 = 1 << 31;
/// GBPA after reset: SHCFG = "use incoming", ABORT = 0 (QEMU `SMMU_GBPA_RESET_VAL`).
pub const GBPA_RESET: u32 = 0x1000;
/// IDR1.CMDQS field position.
pub const IDR1_CMDQS_SHIFT: u32 = 21;
pub const IDR1_CMDQS_MASK: u32 = 0x1f;
/// IDR1.EVENTQS field position.
pub const IDR1_EVENTQS_SHIFT: u32 = 16;
/// The largest queue LOG2SIZE QEMU advertises (SMMU_CMDQS = SMMU_EVENTQS = 19).
pub const QUEUE_LOG2SIZE_MAX: u32 = 19;
/// CMDQ_BASE (and the other queue bases): LOG2SIZE \[4:0\], ADDR \[51:5\], RA \[62\].
pub const Q_BASE_LOG2SIZE_MASK: u64 = 0x1f;
pub const Q_BASE_ADDR_MASK: u64 = 0x000f_ffff_ffff_ffe0;
pub const Q_BASE_WRITABLE: u64 = Q_BASE_ADDR_MASK | Q_BASE_LOG2SIZE_MASK | 1 << 62;
/// CMDQ_PROD.WR (index + wrap bit, 20 bits).
pub const Q_PROD_WRITABLE: u64 = 0xf_ffff;
/// CMDQ_CONS: RD \[19:0\] and ERR \[30:24\].
pub const Q_CONS_WRITABLE: u64 = 0x7f0f_ffff;

/// IDR0: S2P, S1P, TTF = AArch64, COHACC, ASID16, VMID16, TTENDIAN = little, STALL_MODEL = 1
/// (no stall), TERM_MODEL = 1 (abort), ST_LEVEL = 2-level stream table.
const IDR0_RESET: u64 =
    1 << 0 | 1 << 1 | 2 << 2 | 1 << 4 | 1 << 12 | 1 << 18 | 2 << 21 | 1 << 24 | 1 << 26 | 1 << 27;
/// IDR1: SIDSIZE = 16, EVENTQS = CMDQS = 19.
const IDR1_RESET: u64 = 16
    | (QUEUE_LOG2SIZE_MAX as u64) << IDR1_EVENTQS_SHIFT
    | (QUEUE_LOG2SIZE_MAX as u64) << IDR1_CMDQS_SHIFT;
/// IDR3: HAD, XNX, RIL, BBML = 2.
const IDR3_RESET: u64 = 1 << 2 | 1 << 4 | 1 << 10 | 2 << 11;
/// IDR5: OAS = 44 bits, 4K/16K/64K granules.
const IDR5_RESET: u64 = 4 | 1 << 4 | 1 << 5 | 1 << 6;
/// AIDR: SMMUv3.1.
const AIDR_RESET: u64 = 1;
/// A queue base out of reset: LOG2SIZE = 19, no address.
const Q_BASE_RESET: u64 = QUEUE_LOG2SIZE_MAX as u64;

/// How wide a register is: a 64-bit one also answers one 8-byte access at its offset and names
/// its upper word `<NAME>_H`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Width {
    W32,
    W64,
}

/// What software may do with a register.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Writes are dropped and counted as a guest error.
    ReadOnly,
    /// Writes store the value under the write mask (plus the side effect the device attaches).
    ReadWrite,
}

/// One register of the table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RegDef {
    pub reg: Reg,
    pub name: &'static str,
    /// Name of the upper word of a 64-bit register.
    pub high_name: &'static str,
    pub offset: u64,
    pub width: Width,
    pub access: Access,
    pub reset: u64,
    /// Bits a write stores (the rest read as 0).
    pub write_mask: u64,
}

const ALL: u64 = u64::MAX;

/// Declares the table once: offset constants, the [`Reg`] enum and [`TABLE`], in one order.
macro_rules! registers {
    ($($variant:ident $name:ident = $off:literal, $width:ident, $access:ident,
        reset $reset:expr, mask $mask:expr;)*) => {
        $(
            #[doc = concat!("Offset of ", stringify!($name), ".")]
            pub const $name: u64 = $off;
        )*

        /// A register of the main page, by name.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Reg {
            $($variant,)*
        }

        /// Every register, in [`Reg`] order (so `TABLE[reg as usize]` is `reg`'s entry).
        pub const TABLE: &[RegDef] = &[
            $(RegDef {
                reg: Reg::$variant,
                name: stringify!($name),
                high_name: concat!(stringify!($name), "_H"),
                offset: $off,
                width: Width::$width,
                access: Access::$access,
                reset: $reset,
                write_mask: $mask,
            },)*
        ];
    };
}

registers! {
    Idr0 IDR0 = 0x00, W32, ReadOnly, reset IDR0_RESET, mask 0;
    Idr1 IDR1 = 0x04, W32, ReadOnly, reset IDR1_RESET, mask 0;
    Idr2 IDR2 = 0x08, W32, ReadOnly, reset 0, mask 0;
    Idr3 IDR3 = 0x0c, W32, ReadOnly, reset IDR3_RESET, mask 0;
    Idr4 IDR4 = 0x10, W32, ReadOnly, reset 0, mask 0;
    Idr5 IDR5 = 0x14, W32, ReadOnly, reset IDR5_RESET, mask 0;
    Iidr IIDR = 0x18, W32, ReadOnly, reset 0, mask 0;
    Aidr AIDR = 0x1c, W32, ReadOnly, reset AIDR_RESET, mask 0;
    Cr0 CR0 = 0x20, W32, ReadWrite, reset 0, mask ALL;
    Cr0Ack CR0ACK = 0x24, W32, ReadOnly, reset 0, mask 0;
    Cr1 CR1 = 0x28, W32, ReadWrite, reset 0, mask ALL;
    Cr2 CR2 = 0x2c, W32, ReadWrite, reset 0, mask ALL;
    Statusr STATUSR = 0x40, W32, ReadOnly, reset 0, mask 0;
    Gbpa GBPA = 0x44, W32, ReadWrite, reset GBPA_RESET as u64, mask !(GBPA_UPDATE as u64);
    Agbpa AGBPA = 0x48, W32, ReadWrite, reset 0, mask ALL;
    IrqCtrl IRQ_CTRL = 0x50, W32, ReadWrite, reset 0, mask ALL;
    IrqCtrlAck IRQ_CTRLACK = 0x54, W32, ReadOnly, reset 0, mask 0;
    Gerror GERROR = 0x60, W32, ReadOnly, reset 0, mask 0;
    Gerrorn GERRORN = 0x64, W32, ReadWrite, reset 0, mask ALL;
    GerrorIrqCfg0 GERROR_IRQ_CFG0 = 0x68, W64, ReadWrite, reset 0, mask ALL;
    GerrorIrqCfg1 GERROR_IRQ_CFG1 = 0x70, W32, ReadWrite, reset 0, mask ALL;
    GerrorIrqCfg2 GERROR_IRQ_CFG2 = 0x74, W32, ReadWrite, reset 0, mask ALL;
    StrtabBase STRTAB_BASE = 0x80, W64, ReadWrite, reset 0, mask ALL;
    StrtabBaseCfg STRTAB_BASE_CFG = 0x88, W32, ReadWrite, reset 0, mask ALL;
    CmdqBase CMDQ_BASE = 0x90, W64, ReadWrite, reset Q_BASE_RESET, mask Q_BASE_WRITABLE;
    CmdqProd CMDQ_PROD = 0x98, W32, ReadWrite, reset 0, mask Q_PROD_WRITABLE;
    CmdqCons CMDQ_CONS = 0x9c, W32, ReadWrite, reset 0, mask Q_CONS_WRITABLE;
    EventqBase EVENTQ_BASE = 0xa0, W64, ReadWrite, reset Q_BASE_RESET, mask ALL;
    EventqProd EVENTQ_PROD = 0xa8, W32, ReadWrite, reset 0, mask ALL;
    EventqCons EVENTQ_CONS = 0xac, W32, ReadWrite, reset 0, mask ALL;
    EventqIrqCfg0 EVENTQ_IRQ_CFG0 = 0xb0, W64, ReadWrite, reset 0, mask ALL;
    EventqIrqCfg1 EVENTQ_IRQ_CFG1 = 0xb8, W32, ReadWrite, reset 0, mask ALL;
    EventqIrqCfg2 EVENTQ_IRQ_CFG2 = 0xbc, W32, ReadWrite, reset 0, mask ALL;
    PriqBase PRIQ_BASE = 0xc0, W64, ReadWrite, reset 0, mask ALL;
    PriqProd PRIQ_PROD = 0xc8, W32, ReadWrite, reset 0, mask ALL;
    PriqCons PRIQ_CONS = 0xcc, W32, ReadWrite, reset 0, mask ALL;
    PriqIrqCfg0 PRIQ_IRQ_CFG0 = 0xd0, W64, ReadWrite, reset 0, mask ALL;
    PriqIrqCfg1 PRIQ_IRQ_CFG1 = 0xd8, W32, ReadWrite, reset 0, mask ALL;
    PriqIrqCfg2 PRIQ_IRQ_CFG2 = 0xdc, W32, ReadWrite, reset 0, mask ALL;
}

/// 32-bit words the page decodes (every table offset is below `4 * WORDS`).
pub const WORDS: usize = 64;

const NO_REG: u8 = u8::MAX;
const HIGH_WORD: u8 = 0x80;

/// Word index → table index (| [`HIGH_WORD`] for the upper word of a 64-bit register), built
/// from [`TABLE`] at compile time so decoding is one lookup.
const WORD_MAP: [u8; WORDS] = {
    let mut map = [NO_REG; WORDS];
    let mut i = 0;
    while i < TABLE.len() {
        let word = (TABLE[i].offset / 4) as usize;
        map[word] = i as u8;
        if matches!(TABLE[i].width, Width::W64) {
            map[word + 1] = i as u8 | HIGH_WORD;
        }
        i += 1;
    }
    map
};

impl Reg {
    /// This register's table entry.
    pub fn def(self) -> &'static RegDef {
        &TABLE[self as usize]
    }
    /// Word index of the register's (low) word in a register file of [`WORDS`] words.
    pub fn word(self) -> usize {
        (self.def().offset / 4) as usize
    }
}

/// A decoded offset: a register, or the upper word of a 64-bit one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegAt {
    pub reg: Reg,
    /// The access hits the upper word (`<NAME>_H`) of a 64-bit register.
    pub high: bool,
}

impl RegAt {
    pub fn name(self) -> &'static str {
        let d = self.reg.def();
        if self.high { d.high_name } else { d.name }
    }
    /// The page0 offset of the word this names.
    pub fn offset(self) -> u64 {
        self.reg.def().offset + if self.high { 4 } else { 0 }
    }
    /// Word index in a register file of [`WORDS`] words.
    pub fn word(self) -> usize {
        self.reg.word() + self.high as usize
    }
    /// An 8-byte access here reaches the whole register (the low word of a 64-bit one).
    pub fn takes_64bit_access(self) -> bool {
        !self.high && self.reg.def().width == Width::W64
    }
}

/// Decodes a main-page offset (page1 aliases included, offset bit 16 ignored as QEMU does);
/// `None` for offsets no register occupies, unaligned ones included.
pub fn decode(offset: u64) -> Option<RegAt> {
    let off = offset & !PAGE1_ALIAS;
    if off & 3 != 0 || off >= 4 * WORDS as u64 {
        return None;
    }
    match WORD_MAP[(off / 4) as usize] {
        NO_REG => None,
        e => Some(RegAt {
            reg: TABLE[(e & !HIGH_WORD) as usize].reg,
            high: e & HIGH_WORD != 0,
        }),
    }
}

/// The register's name, page1 aliases included (`CR0`, `CMDQ_BASE_H`, …).
pub fn reg_name(offset: u64) -> Option<&'static str> {
    decode(offset).map(RegAt::name)
}

/// 64-bit registers (accessible with one 8-byte access at their low offset).
pub fn is_64bit(offset: u64) -> bool {
    decode(offset).is_some_and(RegAt::takes_64bit_access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_enum_order_and_fits_the_word_map() {
        for (i, d) in TABLE.iter().enumerate() {
            assert_eq!(d.reg as usize, i, "{}", d.name);
            assert!(d.offset % 4 == 0 && ((d.offset / 4) as usize) < WORDS - 1);
            assert_eq!(
                decode(d.offset),
                Some(RegAt {
                    reg: d.reg,
                    high: false
                })
            );
            assert_eq!(
                decode(d.offset | PAGE1_ALIAS).map(RegAt::offset),
                Some(d.offset)
            );
        }
        // no two registers share a word
        let words: usize = TABLE
            .iter()
            .map(|d| if d.width == Width::W64 { 2 } else { 1 })
            .sum();
        assert_eq!(WORD_MAP.iter().filter(|&&e| e != NO_REG).count(), words);
    }

    #[test]
    fn upper_words_of_64_bit_registers_have_their_own_names() {
        assert_eq!(reg_name(0x94), Some("CMDQ_BASE_H"));
        assert_eq!(reg_name(0x6c), Some("GERROR_IRQ_CFG0_H"));
        assert_eq!(reg_name(0x100d4), Some("PRIQ_IRQ_CFG0_H"));
        assert!(is_64bit(CMDQ_BASE) && !is_64bit(CMDQ_BASE + 4) && !is_64bit(CR0));
        assert_eq!(reg_name(CR0 + 1), None);
        assert_eq!(reg_name(0x20020), None);
    }
}
