//! The CMDQV register map as data: page layout, register offsets and field positions, each named
//! once, plus a decoder from an MMIO offset to a typed register reference with a printable name
//! (`VINTF0.LVCMDQ1.PROD_INDX`, `VCMDQ3.CONS_INDX`, `CMDQ_ALLOC_MAP(5)`, `CONFIG`).
//!
//! Layout and fields follow ../shared/reference/cmdqv-hw.md §2–§6. The tracer and the TUI name
//! registers through [`decode`] / [`RegRef::name`]; the model dispatches on the same [`RegRef`],
//! so there is exactly one place that knows where a register lives. The SMMU main page has its
//! own table, declared the same way, in [`smmu`].

use std::fmt;

pub mod smmu;

/// Size of one MMIO page of the CMDQV layout.
pub const PAGE_SIZE: u64 = 0x10000;
/// Config page: global registers and VINTF blocks.
pub const CONFIG_PAGE: u64 = 0x0;
/// Global VCMDQ page0 (control/status), VCMDQ `q` at `+ VCMDQ_STRIDE * q`.
pub const GLOBAL_PAGE0: u64 = 0x10000;
/// Global VCMDQ page1 (addresses).
pub const GLOBAL_PAGE1: u64 = 0x20000;
/// VINTF `i` logical page0 is at `VINTF_PAGE0 + VINTF_APERTURE_STRIDE * i`.
pub const VINTF_PAGE0: u64 = 0x30000;
/// VINTF `i` logical page1 is at `VINTF_PAGE1 + VINTF_APERTURE_STRIDE * i`.
pub const VINTF_PAGE1: u64 = 0x40000;
/// Distance between two VINTFs' logical apertures (page0 + page1).
pub const VINTF_APERTURE_STRIDE: u64 = 0x20000;
/// Distance between two VCMDQ register blocks inside any VCMDQ page.
pub const VCMDQ_STRIDE: u64 = 0x80;
/// First VINTF block in the config page.
pub const VINTF_BLOCK_BASE: u64 = 0x1000;
/// Distance between two VINTF blocks in the config page.
pub const VINTF_BLOCK_STRIDE: u64 = 0x100;

/// Architectural ceilings from the field widths (§1): 7-bit LVCMDQ index and 128-bit
/// CMDQ_ERR_MAP give 128 VCMDQs; the 6-bit VINTF index and 64-bit VI_ERR_MAP give 64 VINTFs;
/// SID_MATCH spans +0x40..+0x80 so 16 SID slots.
pub const MAX_VCMDQS: usize = 128;
pub const MAX_VINTFS: usize = 64;
pub const MAX_SIDS_PER_VINTF: usize = 16;
/// LVCMDQ index field width (7 bits) bounds the logical slots of one VINTF.
pub const MAX_LVCMDQS_PER_VINTF: usize = 128;

/// Global register offsets in the config page.
pub mod off {
    pub const CONFIG: u64 = 0x000;
    pub const PARAM: u64 = 0x004;
    pub const STATUS: u64 = 0x008;
    pub const VI_ERR_MAP_0: u64 = 0x014;
    pub const VI_ERR_MAP_1: u64 = 0x018;
    pub const VI_INT_MASK_0: u64 = 0x01c;
    pub const VI_INT_MASK_1: u64 = 0x020;
    pub const CMDQ_ERR_MAP_0: u64 = 0x024;
    pub const CMDQ_ERR_MAP_3: u64 = 0x030;
    pub const CMDQ_ALLOC_MAP_0: u64 = 0x200;

    /// Offsets inside a VINTF block (base 0x1000 + 0x100·v).
    pub mod vintf {
        pub const CONFIG: u64 = 0x00;
        pub const STATUS: u64 = 0x04;
        pub const GLB_FILT_CFG_0: u64 = 0x0c;
        pub const GLB_FILT_DATA_0: u64 = 0x10;
        pub const SID_MATCH_0: u64 = 0x40;
        pub const SID_REPLACE_0: u64 = 0x80;
        pub const LVCMDQ_ERR_MAP_0: u64 = 0xc0;
    }

    /// Offsets inside one VCMDQ block of page0.
    pub mod page0 {
        pub const CONS_INDX: u64 = 0x00;
        pub const PROD_INDX: u64 = 0x04;
        pub const CONFIG: u64 = 0x08;
        pub const STATUS: u64 = 0x0c;
        pub const GERROR: u64 = 0x10;
        pub const GERRORN: u64 = 0x14;
    }

    /// Offsets inside one VCMDQ block of page1.
    pub mod page1 {
        pub const BASE_L: u64 = 0x00;
        pub const BASE_H: u64 = 0x04;
        pub const CONS_INDX_BASE_DRAM_L: u64 = 0x08;
        pub const CONS_INDX_BASE_DRAM_H: u64 = 0x0c;
    }
}

/// Global CONFIG (0x000) fields.
pub mod config {
    pub const CMDQV_EN: u32 = 1 << 0;
    pub const PER_CMD_OFFSET_SHIFT: u32 = 1;
    pub const MAX_CLK_BATCH_SHIFT: u32 = 4;
    pub const MAX_CMD_BATCH_SHIFT: u32 = 12;
    pub const CONS_DRAM_EN: u32 = 1 << 20;
    /// Bits \[20:0\] are defined; the rest reads 0.
    pub const WRITABLE: u32 = 0x001f_ffff;
    /// QEMU's reset value: enabled, PER_CMD_OFFSET=1, MAX_CLK_BATCH=8, MAX_CMD_BATCH=32 (§7).
    pub const QEMU_RESET: u32 = 0x0002_0083;
}

/// PARAM (0x004) fields.
pub mod param {
    pub const VER_SHIFT: u32 = 0;
    pub const NUM_VCMDQ_LOG2_SHIFT: u32 = 4;
    pub const NUM_VINTF_LOG2_SHIFT: u32 = 8;
    pub const NUM_SID_PER_VINTF_LOG2_SHIFT: u32 = 12;
    pub const FIELD_MASK: u32 = 0xf;
    /// The only CMDQV version Linux and QEMU know.
    pub const VERSION: u32 = 1;
}

/// STATUS (0x008) fields.
pub mod status {
    pub const CMDQV_ENABLED: u32 = 1 << 0;
}

/// CMDQ_ALLOC_MAP(q) fields.
pub mod alloc_map {
    pub const ALLOC: u32 = 1 << 0;
    pub const LVCMDQ_SHIFT: u32 = 1;
    pub const LVCMDQ_MASK: u32 = 0x7f;
    pub const VINTF_SHIFT: u32 = 15;
    pub const VINTF_MASK: u32 = 0x3f;
    pub const WRITABLE: u32 = ALLOC | LVCMDQ_MASK << LVCMDQ_SHIFT | VINTF_MASK << VINTF_SHIFT;

    /// The value Linux writes: `(vintf << 15) | (lidx << 1) | alloc`.
    pub const fn encode(vintf: u32, lidx: u32, alloc: bool) -> u32 {
        (vintf & VINTF_MASK) << VINTF_SHIFT | (lidx & LVCMDQ_MASK) << LVCMDQ_SHIFT | alloc as u32
    }
    pub const fn vintf(v: u32) -> u32 {
        v >> VINTF_SHIFT & VINTF_MASK
    }
    pub const fn lvcmdq(v: u32) -> u32 {
        v >> LVCMDQ_SHIFT & LVCMDQ_MASK
    }
}

/// VINTF_CONFIG fields.
pub mod vintf_config {
    pub const ENABLE: u32 = 1 << 0;
    pub const VMID_SHIFT: u32 = 1;
    pub const VMID_MASK: u32 = 0xffff;
    pub const HYP_OWN: u32 = 1 << 17;
    pub const WRITABLE: u32 = ENABLE | VMID_MASK << VMID_SHIFT | HYP_OWN;
    pub const fn vmid(v: u32) -> u16 {
        (v >> VMID_SHIFT & VMID_MASK) as u16
    }
}

/// VINTF_STATUS fields.
pub mod vintf_status {
    pub const ENABLE_OK: u32 = 1 << 0;
    pub const STATUS_SHIFT: u32 = 1;
    /// STATUS = 1: a VCMDQ of this VINTF is in error (QEMU's reading).
    pub const STATUS_VCMDQ_ERR: u32 = 1 << STATUS_SHIFT;
    pub const VI_NUM_LVCMDQ_SHIFT: u32 = 16;
    pub const VI_NUM_LVCMDQ_MASK: u32 = 0xff;
}

/// SID_MATCH(s) fields.
pub mod sid_match {
    pub const ENABLE: u32 = 1 << 0;
    pub const VSID_SHIFT: u32 = 1;
    pub const VSID_MASK: u32 = 0xf_ffff;
    pub const WRITABLE: u32 = ENABLE | VSID_MASK << VSID_SHIFT;
}

/// SID_REPLACE(s) fields.
pub mod sid_replace {
    pub const PSID_MASK: u32 = 0xf_ffff;
}

/// VCMDQ CONS_INDX fields.
pub mod cons_indx {
    pub const RD_MASK: u32 = 0xf_ffff;
    pub const ERR_SHIFT: u32 = 24;
    pub const ERR_MASK: u32 = 0x7f;
    pub const WRITABLE: u32 = RD_MASK | ERR_MASK << ERR_SHIFT;
    pub const fn err(v: u32) -> u32 {
        v >> ERR_SHIFT & ERR_MASK
    }
}

/// VCMDQ PROD_INDX fields.
pub mod prod_indx {
    pub const WR_MASK: u32 = 0xf_ffff;
}

/// VCMDQ CONFIG / STATUS fields.
pub mod vcmdq_config {
    pub const CMDQ_EN: u32 = 1 << 0;
}
pub mod vcmdq_status {
    pub const CMDQ_EN_OK: u32 = 1 << 0;
}

/// VCMDQ GERROR / GERRORN fields (also the SMMU's GERROR.CMDQ_ERR position).
pub mod gerror {
    pub const CMDQ_ERR: u32 = 1 << 0;
    pub const CONS_DRAM_WR_ABT_ERR: u32 = 1 << 1;
    pub const CMDQ_INIT_ERR: u32 = 1 << 2;
    pub const MASK: u32 = CMDQ_ERR | CONS_DRAM_WR_ABT_ERR | CMDQ_INIT_ERR;
}

/// VCMDQ BASE (page1 BASE_L/BASE_H as one 64-bit value) fields.
pub mod base {
    pub const LOG2SIZE_MASK: u64 = 0x1f;
    /// ADDR occupies bits \[47:5\].
    pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_ffe0;
    /// BASE_H and CONS_INDX_BASE_DRAM_H implement bits \[15:0\].
    pub const HIGH_WRITABLE: u32 = 0xffff;
}

/// CERROR codes reported in CONS_INDX.ERR (§5).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cerror {
    None = 0,
    /// Illegal command (unknown opcode, disallowed command, bad field).
    Ill = 1,
    /// Abort on command fetch.
    Abt = 2,
    /// ATC invalidation completion timeout (CONS left on the CMD_SYNC).
    AtcInvSync = 3,
    /// CMDQV-specific illegal access (QEMU header only).
    IllAccess = 4,
}

impl Cerror {
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::None,
            1 => Self::Ill,
            2 => Self::Abt,
            3 => Self::AtcInvSync,
            4 => Self::IllAccess,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "CERROR_NONE",
            Self::Ill => "CERROR_ILL",
            Self::Abt => "CERROR_ABT",
            Self::AtcInvSync => "CERROR_ATC_INV_SYNC",
            Self::IllAccess => "CERROR_ILL_ACCESS",
        }
    }
    /// Three letters for a table cell: `ILL`, `ABT`, `ATC`, `IAC` (`-` for none).
    pub fn short_name(self) -> &'static str {
        match self {
            Self::None => "-",
            Self::Ill => "ILL",
            Self::Abt => "ABT",
            Self::AtcInvSync => "ATC",
            Self::IllAccess => "IAC",
        }
    }
}

/// How big the device is: everything else (PARAM, MMIO size, decode bounds) follows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub num_vintf_log2: u8,
    pub num_vcmdq_log2: u8,
    pub num_sid_per_vintf_log2: u8,
}

impl Geometry {
    /// QEMU's guest-visible CMDQV: 1 VINTF, 2 VCMDQs, 16 SID slots, MMIO size 0x50000.
    pub const fn guest() -> Self {
        Self {
            num_vintf_log2: 0,
            num_vcmdq_log2: 1,
            num_sid_per_vintf_log2: 4,
        }
    }
    /// Grace host sizing inferred from field widths (§1): 64 VINTFs, 128 VCMDQs, 16 SIDs.
    pub const fn host() -> Self {
        Self {
            num_vintf_log2: 6,
            num_vcmdq_log2: 7,
            num_sid_per_vintf_log2: 4,
        }
    }
    /// A geometry from a PARAM value, clamped to the architectural ceilings so that a bogus
    /// PARAM cannot make the model allocate unbounded state.
    pub fn from_param(param: u32) -> Self {
        let f = |s: u32| (param >> s & param::FIELD_MASK) as u8;
        Self {
            num_vintf_log2: f(param::NUM_VINTF_LOG2_SHIFT).min(6),
            num_vcmdq_log2: f(param::NUM_VCMDQ_LOG2_SHIFT).min(7),
            num_sid_per_vintf_log2: f(param::NUM_SID_PER_VINTF_LOG2_SHIFT).min(4),
        }
        .normalized()
    }
    /// Clamp to the ceilings and keep at least one VCMDQ per VINTF (Linux divides by the ratio).
    pub fn normalized(self) -> Self {
        let num_vintf_log2 = self.num_vintf_log2.min(6);
        let num_vcmdq_log2 = self.num_vcmdq_log2.clamp(num_vintf_log2, 7);
        Self {
            num_vintf_log2,
            num_vcmdq_log2,
            num_sid_per_vintf_log2: self.num_sid_per_vintf_log2.min(4),
        }
    }
    pub fn num_vintfs(&self) -> usize {
        1 << self.num_vintf_log2
    }
    pub fn num_vcmdqs(&self) -> usize {
        1 << self.num_vcmdq_log2
    }
    pub fn num_sids_per_vintf(&self) -> usize {
        1 << self.num_sid_per_vintf_log2
    }
    /// Linux's static partition: LVCMDQs per VINTF = NUM_VCMDQ / NUM_VINTF.
    pub fn lvcmdqs_per_vintf(&self) -> usize {
        self.num_vcmdqs() / self.num_vintfs()
    }
    /// The PARAM register value advertising this geometry.
    pub fn param(&self) -> u32 {
        param::VERSION << param::VER_SHIFT
            | (self.num_vcmdq_log2 as u32) << param::NUM_VCMDQ_LOG2_SHIFT
            | (self.num_vintf_log2 as u32) << param::NUM_VINTF_LOG2_SHIFT
            | (self.num_sid_per_vintf_log2 as u32) << param::NUM_SID_PER_VINTF_LOG2_SHIFT
    }
    /// MMIO region size: config + global page0/page1 + one 128 KiB aperture per VINTF.
    pub fn mmio_size(&self) -> u64 {
        VINTF_PAGE0 + VINTF_APERTURE_STRIDE * self.num_vintfs() as u64
    }
    /// Decode an offset, bounded by this geometry (VINTF, VCMDQ and SID indices in range).
    pub fn decode(&self, offset: u64) -> Option<RegRef> {
        decode_bounded(offset, self)
    }
}

impl Default for Geometry {
    fn default() -> Self {
        Self::guest()
    }
}

/// Registers of one VINTF block in the config page.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum VintfReg {
    Config,
    Status,
    GlbFiltCfg0,
    GlbFiltData0,
    SidMatch(u8),
    SidReplace(u8),
    /// LVCMDQ_ERR_MAP word 0..3.
    LvcmdqErrMap(u8),
}

/// Page0 (control/status) registers of one VCMDQ.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Page0Reg {
    ConsIndx,
    ProdIndx,
    Config,
    Status,
    Gerror,
    Gerrorn,
}

impl Page0Reg {
    pub const ALL: [Page0Reg; 6] = [
        Page0Reg::ConsIndx,
        Page0Reg::ProdIndx,
        Page0Reg::Config,
        Page0Reg::Status,
        Page0Reg::Gerror,
        Page0Reg::Gerrorn,
    ];
    pub fn from_offset(off: u64) -> Option<Self> {
        Some(match off {
            off::page0::CONS_INDX => Self::ConsIndx,
            off::page0::PROD_INDX => Self::ProdIndx,
            off::page0::CONFIG => Self::Config,
            off::page0::STATUS => Self::Status,
            off::page0::GERROR => Self::Gerror,
            off::page0::GERRORN => Self::Gerrorn,
            _ => return None,
        })
    }
    pub fn offset(self) -> u64 {
        match self {
            Self::ConsIndx => off::page0::CONS_INDX,
            Self::ProdIndx => off::page0::PROD_INDX,
            Self::Config => off::page0::CONFIG,
            Self::Status => off::page0::STATUS,
            Self::Gerror => off::page0::GERROR,
            Self::Gerrorn => off::page0::GERRORN,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::ConsIndx => "CONS_INDX",
            Self::ProdIndx => "PROD_INDX",
            Self::Config => "CONFIG",
            Self::Status => "STATUS",
            Self::Gerror => "GERROR",
            Self::Gerrorn => "GERRORN",
        }
    }
}

/// Page1 (address) registers of one VCMDQ.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Page1Reg {
    BaseL,
    BaseH,
    ConsIndxBaseDramL,
    ConsIndxBaseDramH,
}

impl Page1Reg {
    pub fn from_offset(off: u64) -> Option<Self> {
        Some(match off {
            off::page1::BASE_L => Self::BaseL,
            off::page1::BASE_H => Self::BaseH,
            off::page1::CONS_INDX_BASE_DRAM_L => Self::ConsIndxBaseDramL,
            off::page1::CONS_INDX_BASE_DRAM_H => Self::ConsIndxBaseDramH,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::BaseL => "BASE_L",
            Self::BaseH => "BASE_H",
            Self::ConsIndxBaseDramL => "CONS_INDX_BASE_DRAM_L",
            Self::ConsIndxBaseDramH => "CONS_INDX_BASE_DRAM_H",
        }
    }
}

/// A VCMDQ register in either page.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum VcmdqReg {
    Page0(Page0Reg),
    Page1(Page1Reg),
}

impl VcmdqReg {
    pub fn name(self) -> &'static str {
        match self {
            Self::Page0(r) => r.name(),
            Self::Page1(r) => r.name(),
        }
    }
}

/// Which aperture a VCMDQ register was reached through.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Aperture {
    /// Global pages (0x10000 / 0x20000), slot = global VCMDQ index.
    Global,
    /// VINTF `n`'s logical pages, slot = LVCMDQ index.
    Vintf(u8),
}

/// A decoded register.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegRef {
    Config,
    Param,
    Status,
    /// VI_ERR_MAP word 0/1.
    ViErrMap(u8),
    /// VI_INT_MASK word 0/1.
    ViIntMask(u8),
    /// CMDQ_ERR_MAP word 0..3.
    CmdqErrMap(u8),
    /// CMDQ_ALLOC_MAP(q).
    CmdqAllocMap(u8),
    Vintf {
        vintf: u8,
        reg: VintfReg,
    },
    Vcmdq {
        aperture: Aperture,
        slot: u8,
        reg: VcmdqReg,
    },
}

impl RegRef {
    /// The register's name as the tracer and TUI show it.
    pub fn name(&self) -> String {
        self.to_string()
    }
    /// True for registers software cannot write.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            RegRef::Param
                | RegRef::Status
                | RegRef::ViErrMap(_)
                | RegRef::CmdqErrMap(_)
                | RegRef::Vintf {
                    reg: VintfReg::Status | VintfReg::LvcmdqErrMap(_),
                    ..
                }
                | RegRef::Vcmdq {
                    reg: VcmdqReg::Page0(Page0Reg::Status | Page0Reg::Gerror),
                    ..
                }
        )
    }
    /// The MMIO offset of this register (inverse of [`decode`]).
    pub fn offset(&self) -> u64 {
        match *self {
            RegRef::Config => off::CONFIG,
            RegRef::Param => off::PARAM,
            RegRef::Status => off::STATUS,
            RegRef::ViErrMap(w) => off::VI_ERR_MAP_0 + 4 * w as u64,
            RegRef::ViIntMask(w) => off::VI_INT_MASK_0 + 4 * w as u64,
            RegRef::CmdqErrMap(w) => off::CMDQ_ERR_MAP_0 + 4 * w as u64,
            RegRef::CmdqAllocMap(q) => off::CMDQ_ALLOC_MAP_0 + 4 * q as u64,
            RegRef::Vintf { vintf, reg } => {
                VINTF_BLOCK_BASE
                    + VINTF_BLOCK_STRIDE * vintf as u64
                    + match reg {
                        VintfReg::Config => off::vintf::CONFIG,
                        VintfReg::Status => off::vintf::STATUS,
                        VintfReg::GlbFiltCfg0 => off::vintf::GLB_FILT_CFG_0,
                        VintfReg::GlbFiltData0 => off::vintf::GLB_FILT_DATA_0,
                        VintfReg::SidMatch(s) => off::vintf::SID_MATCH_0 + 4 * s as u64,
                        VintfReg::SidReplace(s) => off::vintf::SID_REPLACE_0 + 4 * s as u64,
                        VintfReg::LvcmdqErrMap(w) => off::vintf::LVCMDQ_ERR_MAP_0 + 4 * w as u64,
                    }
            }
            RegRef::Vcmdq {
                aperture,
                slot,
                reg,
            } => {
                let page = match (aperture, reg) {
                    (Aperture::Global, VcmdqReg::Page0(_)) => GLOBAL_PAGE0,
                    (Aperture::Global, VcmdqReg::Page1(_)) => GLOBAL_PAGE1,
                    (Aperture::Vintf(i), VcmdqReg::Page0(_)) => {
                        VINTF_PAGE0 + VINTF_APERTURE_STRIDE * i as u64
                    }
                    (Aperture::Vintf(i), VcmdqReg::Page1(_)) => {
                        VINTF_PAGE1 + VINTF_APERTURE_STRIDE * i as u64
                    }
                };
                let r = match reg {
                    VcmdqReg::Page0(r) => r.offset(),
                    VcmdqReg::Page1(r) => match r {
                        Page1Reg::BaseL => off::page1::BASE_L,
                        Page1Reg::BaseH => off::page1::BASE_H,
                        Page1Reg::ConsIndxBaseDramL => off::page1::CONS_INDX_BASE_DRAM_L,
                        Page1Reg::ConsIndxBaseDramH => off::page1::CONS_INDX_BASE_DRAM_H,
                    },
                };
                page + VCMDQ_STRIDE * slot as u64 + r
            }
        }
    }
}

impl fmt::Display for RegRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegRef::Config => f.write_str("CONFIG"),
            RegRef::Param => f.write_str("PARAM"),
            RegRef::Status => f.write_str("STATUS"),
            RegRef::ViErrMap(w) => write!(f, "VI_ERR_MAP_{w}"),
            RegRef::ViIntMask(w) => write!(f, "VI_INT_MASK_{w}"),
            RegRef::CmdqErrMap(w) => write!(f, "CMDQ_ERR_MAP_{w}"),
            RegRef::CmdqAllocMap(q) => write!(f, "CMDQ_ALLOC_MAP({q})"),
            RegRef::Vintf { vintf, reg } => match reg {
                VintfReg::Config => write!(f, "VINTF{vintf}.CONFIG"),
                VintfReg::Status => write!(f, "VINTF{vintf}.STATUS"),
                VintfReg::GlbFiltCfg0 => write!(f, "VINTF{vintf}.GLB_FILT_CFG_0"),
                VintfReg::GlbFiltData0 => write!(f, "VINTF{vintf}.GLB_FILT_DATA_0"),
                VintfReg::SidMatch(s) => write!(f, "VINTF{vintf}.SID_MATCH({s})"),
                VintfReg::SidReplace(s) => write!(f, "VINTF{vintf}.SID_REPLACE({s})"),
                VintfReg::LvcmdqErrMap(w) => write!(f, "VINTF{vintf}.LVCMDQ_ERR_MAP_{w}"),
            },
            RegRef::Vcmdq {
                aperture: Aperture::Global,
                slot,
                reg,
            } => write!(f, "VCMDQ{slot}.{}", reg.name()),
            RegRef::Vcmdq {
                aperture: Aperture::Vintf(i),
                slot,
                reg,
            } => {
                write!(f, "VINTF{i}.LVCMDQ{slot}.{}", reg.name())
            }
        }
    }
}

/// Decode an offset against the architectural maximum layout (64 VINTFs, 128 VCMDQs, 16 SIDs).
/// Only 4-byte-aligned offsets of defined registers decode; everything else is `None`.
pub fn decode(offset: u64) -> Option<RegRef> {
    decode_bounded(offset, &Geometry::host())
}

fn decode_bounded(offset: u64, g: &Geometry) -> Option<RegRef> {
    if offset & 3 != 0 || offset >= g.mmio_size() {
        return None;
    }
    let page = offset & !(PAGE_SIZE - 1);
    let in_page = offset & (PAGE_SIZE - 1);
    match page {
        CONFIG_PAGE => decode_config(in_page, g),
        GLOBAL_PAGE0 | GLOBAL_PAGE1 => {
            let slot = in_page / VCMDQ_STRIDE;
            if slot >= g.num_vcmdqs() as u64 {
                return None;
            }
            let reg = decode_vcmdq_reg(page == GLOBAL_PAGE0, in_page % VCMDQ_STRIDE)?;
            Some(RegRef::Vcmdq {
                aperture: Aperture::Global,
                slot: slot as u8,
                reg,
            })
        }
        _ => {
            let rel = page - VINTF_PAGE0;
            let vintf = rel / VINTF_APERTURE_STRIDE;
            let is_page0 = rel.is_multiple_of(VINTF_APERTURE_STRIDE);
            let slot = in_page / VCMDQ_STRIDE;
            if vintf >= g.num_vintfs() as u64 || slot >= MAX_LVCMDQS_PER_VINTF as u64 {
                return None;
            }
            let reg = decode_vcmdq_reg(is_page0, in_page % VCMDQ_STRIDE)?;
            Some(RegRef::Vcmdq {
                aperture: Aperture::Vintf(vintf as u8),
                slot: slot as u8,
                reg,
            })
        }
    }
}

fn decode_vcmdq_reg(page0: bool, off: u64) -> Option<VcmdqReg> {
    if page0 {
        Page0Reg::from_offset(off).map(VcmdqReg::Page0)
    } else {
        Page1Reg::from_offset(off).map(VcmdqReg::Page1)
    }
}

fn decode_config(off: u64, g: &Geometry) -> Option<RegRef> {
    Some(match off {
        off::CONFIG => RegRef::Config,
        off::PARAM => RegRef::Param,
        off::STATUS => RegRef::Status,
        off::VI_ERR_MAP_0 | off::VI_ERR_MAP_1 => {
            RegRef::ViErrMap(((off - off::VI_ERR_MAP_0) / 4) as u8)
        }
        off::VI_INT_MASK_0 | off::VI_INT_MASK_1 => {
            RegRef::ViIntMask(((off - off::VI_INT_MASK_0) / 4) as u8)
        }
        off::CMDQ_ERR_MAP_0..=off::CMDQ_ERR_MAP_3 => {
            RegRef::CmdqErrMap(((off - off::CMDQ_ERR_MAP_0) / 4) as u8)
        }
        0x200..0x400 => {
            let q = (off - off::CMDQ_ALLOC_MAP_0) / 4;
            if q >= g.num_vcmdqs() as u64 {
                return None;
            }
            RegRef::CmdqAllocMap(q as u8)
        }
        _ if off >= VINTF_BLOCK_BASE => {
            let vintf = (off - VINTF_BLOCK_BASE) / VINTF_BLOCK_STRIDE;
            if vintf >= g.num_vintfs() as u64 {
                return None;
            }
            let r = (off - VINTF_BLOCK_BASE) % VINTF_BLOCK_STRIDE;
            let sids = g.num_sids_per_vintf() as u64;
            let reg = match r {
                off::vintf::CONFIG => VintfReg::Config,
                off::vintf::STATUS => VintfReg::Status,
                off::vintf::GLB_FILT_CFG_0 => VintfReg::GlbFiltCfg0,
                off::vintf::GLB_FILT_DATA_0 => VintfReg::GlbFiltData0,
                0x40..0x80 if (r - 0x40) / 4 < sids => VintfReg::SidMatch(((r - 0x40) / 4) as u8),
                0x80..0xc0 if (r - 0x80) / 4 < sids => VintfReg::SidReplace(((r - 0x80) / 4) as u8),
                0xc0..0xd0 => VintfReg::LvcmdqErrMap(((r - 0xc0) / 4) as u8),
                _ => return None,
            };
            RegRef::Vintf {
                vintf: vintf as u8,
                reg,
            }
        }
        _ => return None,
    })
}

/// Name of an SMMUv3 main-page register (`CR0`, `CMDQ_PROD`, …).
pub fn smmu_reg_name(offset: u64) -> Option<&'static str> {
    smmu::reg_name(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(off: u64) -> String {
        decode(off).map(|r| r.name()).unwrap_or_else(|| "-".into())
    }

    #[test]
    fn config_page_registers_decode_by_name() {
        assert_eq!(name(0x0), "CONFIG");
        assert_eq!(name(0x4), "PARAM");
        assert_eq!(name(0x8), "STATUS");
        assert_eq!(name(0x14), "VI_ERR_MAP_0");
        assert_eq!(name(0x18), "VI_ERR_MAP_1");
        assert_eq!(name(0x1c), "VI_INT_MASK_0");
        assert_eq!(name(0x20), "VI_INT_MASK_1");
        assert_eq!(name(0x24), "CMDQ_ERR_MAP_0");
        assert_eq!(name(0x30), "CMDQ_ERR_MAP_3");
        assert_eq!(name(0x200), "CMDQ_ALLOC_MAP(0)");
        assert_eq!(name(0x214), "CMDQ_ALLOC_MAP(5)");
        assert_eq!(name(0x3fc), "CMDQ_ALLOC_MAP(127)");
        assert_eq!(name(0xc), "-");
        assert_eq!(name(0x34), "-");
        assert_eq!(name(0x2), "-");
    }

    #[test]
    fn vintf_block_registers_decode_by_name() {
        assert_eq!(name(0x1000), "VINTF0.CONFIG");
        assert_eq!(name(0x1004), "VINTF0.STATUS");
        assert_eq!(name(0x100c), "VINTF0.GLB_FILT_CFG_0");
        assert_eq!(name(0x1010), "VINTF0.GLB_FILT_DATA_0");
        assert_eq!(name(0x1040), "VINTF0.SID_MATCH(0)");
        assert_eq!(name(0x107c), "VINTF0.SID_MATCH(15)");
        assert_eq!(name(0x1080), "VINTF0.SID_REPLACE(0)");
        assert_eq!(name(0x10c0), "VINTF0.LVCMDQ_ERR_MAP_0");
        assert_eq!(name(0x10cc), "VINTF0.LVCMDQ_ERR_MAP_3");
        assert_eq!(name(0x1304), "VINTF3.STATUS");
        assert_eq!(name(0x4f00), "VINTF63.CONFIG");
        assert_eq!(name(0x5000), "-");
        assert_eq!(name(0x10d0), "-");
    }

    #[test]
    fn vcmdq_pages_decode_in_both_apertures() {
        assert_eq!(name(0x10000), "VCMDQ0.CONS_INDX");
        assert_eq!(name(0x10180), "VCMDQ3.CONS_INDX");
        assert_eq!(name(0x10184), "VCMDQ3.PROD_INDX");
        assert_eq!(name(0x10188), "VCMDQ3.CONFIG");
        assert_eq!(name(0x1018c), "VCMDQ3.STATUS");
        assert_eq!(name(0x10190), "VCMDQ3.GERROR");
        assert_eq!(name(0x10194), "VCMDQ3.GERRORN");
        assert_eq!(name(0x10198), "-");
        assert_eq!(name(0x20180), "VCMDQ3.BASE_L");
        assert_eq!(name(0x20184), "VCMDQ3.BASE_H");
        assert_eq!(name(0x20188), "VCMDQ3.CONS_INDX_BASE_DRAM_L");
        assert_eq!(name(0x2018c), "VCMDQ3.CONS_INDX_BASE_DRAM_H");
        assert_eq!(name(0x30084), "VINTF0.LVCMDQ1.PROD_INDX");
        assert_eq!(name(0x40080), "VINTF0.LVCMDQ1.BASE_L");
        assert_eq!(name(0x50000), "VINTF1.LVCMDQ0.CONS_INDX");
        assert_eq!(
            name(0x30000 + 0x20000 * 63 + 0x10000 + 0x3f8c),
            "VINTF63.LVCMDQ127.CONS_INDX_BASE_DRAM_H"
        );
        assert_eq!(name(0x30000 + 0x4000), "-"); // LVCMDQ128 does not exist
        assert_eq!(name(0x830000), "-");
    }

    #[test]
    fn guest_geometry_bounds_the_decoder() {
        let g = Geometry::guest();
        assert_eq!(g.mmio_size(), 0x50000);
        assert_eq!(g.param(), 0x4011);
        assert!(g.decode(0x10080).is_some());
        assert!(g.decode(0x10100).is_none()); // VCMDQ2 does not exist
        assert!(g.decode(0x204).is_some());
        assert!(g.decode(0x208).is_none());
        assert!(g.decode(0x1100).is_none()); // VINTF1
        assert!(g.decode(0x50000).is_none());
        let h = Geometry::host();
        assert_eq!(h.mmio_size(), 0x830000);
        assert_eq!(h.param(), 0x4671);
        assert_eq!(Geometry::from_param(h.param()), h);
        assert_eq!(Geometry::from_param(0xffff_ffff), h);
        assert_eq!(h.lvcmdqs_per_vintf(), 2);
    }

    #[test]
    fn offset_is_the_inverse_of_decode() {
        let g = Geometry::host();
        for off in (0..g.mmio_size()).step_by(4) {
            if let Some(r) = g.decode(off) {
                assert_eq!(r.offset(), off, "{r}");
            }
        }
    }

    #[test]
    fn read_only_registers_are_marked() {
        assert!(decode(0x4).unwrap().is_read_only());
        assert!(decode(0x1004).unwrap().is_read_only());
        assert!(decode(0x1018c).unwrap().is_read_only());
        assert!(!decode(0x10184).unwrap().is_read_only());
        assert!(!decode(0x0).unwrap().is_read_only());
    }

    #[test]
    fn field_helpers_match_linux_encoding() {
        let v = alloc_map::encode(5, 3, true);
        assert_eq!(v, 5 << 15 | 3 << 1 | 1);
        assert_eq!(alloc_map::vintf(v), 5);
        assert_eq!(alloc_map::lvcmdq(v), 3);
        assert_eq!(vintf_config::vmid(0x1234 << 1 | 1), 0x1234);
        assert_eq!(cons_indx::err(1 << 24 | 5), 1);
        assert_eq!(Cerror::from_code(2), Some(Cerror::Abt));
        assert_eq!(Cerror::from_code(9), None);
    }

    #[test]
    fn smmu_register_names() {
        assert_eq!(smmu_reg_name(0x20), Some("CR0"));
        assert_eq!(smmu_reg_name(0x24), Some("CR0ACK"));
        assert_eq!(smmu_reg_name(0x60), Some("GERROR"));
        assert_eq!(smmu_reg_name(0x64), Some("GERRORN"));
        assert_eq!(smmu_reg_name(0x90), Some("CMDQ_BASE"));
        assert_eq!(smmu_reg_name(0x98), Some("CMDQ_PROD"));
        assert_eq!(smmu_reg_name(0x9c), Some("CMDQ_CONS"));
        assert_eq!(smmu_reg_name(0x10098), Some("CMDQ_PROD"));
        assert_eq!(smmu_reg_name(0x14), Some("IDR5"));
        assert_eq!(smmu_reg_name(0x3c), None);
    }
}
