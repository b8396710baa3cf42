//! The SMMUv3 command codec: 16-byte commands (two little-endian u64 words), opcode in w0\[7:0\].
//!
//! Field positions follow Linux's `CMDQ_*` masks and QEMU's `CMD_*` extractors
//! (../shared/reference/cmdqv-hw.md §9). Decoding never fails: unknown opcodes are a variant.
//! [`Command::encode`] is the inverse for every field the decoder extracts, so tests and
//! benchmarks build commands from the same field table.

/// Opcode values (w0\[7:0\]).
pub mod op {
    pub const PREFETCH_CFG: u8 = 0x01;
    pub const PREFETCH_ADDR: u8 = 0x02;
    pub const CFGI_STE: u8 = 0x03;
    pub const CFGI_STE_RANGE: u8 = 0x04;
    pub const CFGI_CD: u8 = 0x05;
    pub const CFGI_CD_ALL: u8 = 0x06;
    pub const TLBI_NH_ALL: u8 = 0x10;
    pub const TLBI_NH_ASID: u8 = 0x11;
    pub const TLBI_NH_VA: u8 = 0x12;
    pub const TLBI_NH_VAA: u8 = 0x13;
    pub const TLBI_EL3_ALL: u8 = 0x18;
    pub const TLBI_EL3_VA: u8 = 0x1a;
    pub const TLBI_EL2_ALL: u8 = 0x20;
    pub const TLBI_EL2_ASID: u8 = 0x21;
    pub const TLBI_EL2_VA: u8 = 0x22;
    pub const TLBI_EL2_VAA: u8 = 0x23;
    pub const TLBI_S12_VMALL: u8 = 0x28;
    pub const TLBI_S2_IPA: u8 = 0x2a;
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    pub const ATC_INV: u8 = 0x40;
    pub const PRI_RESP: u8 = 0x41;
    pub const RESUME: u8 = 0x44;
    pub const STALL_TERM: u8 = 0x45;
    pub const CMD_SYNC: u8 = 0x46;
}

/// The architectural name of an opcode (`CMD_SYNC`, `TLBI_NH_VA`, …), or `UNKNOWN_0xNN`-style
/// `None` for values the architecture does not define.
pub fn opcode_name(opcode: u8) -> Option<&'static str> {
    Some(match opcode {
        op::PREFETCH_CFG => "PREFETCH_CFG",
        op::PREFETCH_ADDR => "PREFETCH_ADDR",
        op::CFGI_STE => "CFGI_STE",
        op::CFGI_STE_RANGE => "CFGI_STE_RANGE",
        op::CFGI_CD => "CFGI_CD",
        op::CFGI_CD_ALL => "CFGI_CD_ALL",
        op::TLBI_NH_ALL => "TLBI_NH_ALL",
        op::TLBI_NH_ASID => "TLBI_NH_ASID",
        op::TLBI_NH_VA => "TLBI_NH_VA",
        op::TLBI_NH_VAA => "TLBI_NH_VAA",
        op::TLBI_EL3_ALL => "TLBI_EL3_ALL",
        op::TLBI_EL3_VA => "TLBI_EL3_VA",
        op::TLBI_EL2_ALL => "TLBI_EL2_ALL",
        op::TLBI_EL2_ASID => "TLBI_EL2_ASID",
        op::TLBI_EL2_VA => "TLBI_EL2_VA",
        op::TLBI_EL2_VAA => "TLBI_EL2_VAA",
        op::TLBI_S12_VMALL => "TLBI_S12_VMALL",
        op::TLBI_S2_IPA => "TLBI_S2_IPA",
        op::TLBI_NSNH_ALL => "TLBI_NSNH_ALL",
        op::ATC_INV => "ATC_INV",
        op::PRI_RESP => "PRI_RESP",
        op::RESUME => "RESUME",
        op::STALL_TERM => "STALL_TERM",
        op::CMD_SYNC => "CMD_SYNC",
        _ => return None,
    })
}

/// One line describing the command in `w0`, `w1` (see [`Command::describe`]).
pub fn describe(w0: u64, w1: u64) -> String {
    Command::decode(w0, w1).describe([w0, w1])
}

/// Name of the command in `w0` for statistics: the opcode name, or `UNKNOWN(0xNN)`.
pub fn command_name(w0: u64) -> std::borrow::Cow<'static, str> {
    let opcode = w0 as u8;
    match opcode_name(opcode) {
        Some(n) => n.into(),
        None => format!("UNKNOWN(0x{opcode:02x})").into(),
    }
}

#[inline]
fn bits(v: u64, hi: u32, lo: u32) -> u64 {
    (v >> lo) & (u64::MAX >> (63 - (hi - lo)))
}

#[inline]
fn field(v: u64, hi: u32, lo: u32) -> u64 {
    (v & (u64::MAX >> (63 - (hi - lo)))) << lo
}

fn flag(b: bool, bit: u32) -> u64 {
    (b as u64) << bit
}

fn put_sid(sid: u32) -> u64 {
    (sid as u64) << 32
}

/// SSID w0\[31:12\] with SSV w0\[11\].
fn put_ssid(ssid: u32, ssv: bool) -> u64 {
    field(ssid as u64, 31, 12) | flag(ssv, 11)
}

/// The w0 fields several opcodes share (each opcode uses some of them).
#[derive(Copy, Clone)]
struct Fields {
    /// w0\[63:32\].
    sid: u32,
    /// w0\[31:12\].
    ssid: u32,
    /// w0\[11\].
    ssv: bool,
    /// w0\[10\].
    ssec: bool,
    /// w0\[47:32\].
    vmid: u16,
    /// w0\[63:48\].
    asid: u16,
}

impl Fields {
    #[inline]
    fn of(w0: u64) -> Self {
        Self {
            sid: (w0 >> 32) as u32,
            ssid: bits(w0, 31, 12) as u32,
            ssv: w0 & (1 << 11) != 0,
            ssec: w0 & (1 << 10) != 0,
            vmid: bits(w0, 47, 32) as u16,
            asid: (w0 >> 48) as u16,
        }
    }
}

/// The address-range part of the TLBI_*_VA / *_VAA / S2_IPA commands.
///
/// Range mode (SMMU IDR3.RIL) is selected by `tg != 0` alone; the range then covers
/// `(num + 1) << scale` pages of granule `tg` (1 = 4K, 2 = 16K, 3 = 64K) starting at `addr`.
/// With `tg == 0` it is a single-address invalidation and `num`/`scale` are ignored (§9).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct VaRange {
    /// w0\[16:12\].
    pub num: u8,
    /// w0\[24:20\].
    pub scale: u8,
    /// w1\[0\]: leaf-only.
    pub leaf: bool,
    /// w1\[9:8\]: level hint.
    pub ttl: u8,
    /// w1\[11:10\]: granule (0 = not a range).
    pub tg: u8,
    /// The address with bits \[11:0\] clear (VA w1\[63:12\], IPA w1\[51:12\]).
    pub addr: u64,
}

impl VaRange {
    pub fn is_range(&self) -> bool {
        self.tg != 0
    }
    /// Page count covered in range mode (1 for a single address).
    pub fn num_pages(&self) -> u64 {
        if self.is_range() {
            (self.num as u64 + 1) << self.scale
        } else {
            1
        }
    }
    /// Granule size in bytes in range mode (4 KiB for a single address).
    pub fn granule_bytes(&self) -> u64 {
        match self.tg {
            2 => 16 << 10,
            3 => 64 << 10,
            _ => 4 << 10,
        }
    }
    /// TG as logs show it: `none` (a single address), `4K`, `16K`, `64K`.
    pub fn tg_name(&self) -> &'static str {
        match self.tg & 3 {
            0 => "none",
            1 => "4K",
            2 => "16K",
            _ => "64K",
        }
    }
    /// `va=0x1000 tg=4K num=0 scale=0 leaf` (`what` names the address).
    fn describe(&self, what: &str) -> String {
        let leaf = if self.leaf { " leaf" } else { "" };
        format!(
            "{what}={:#x} tg={} num={} scale={}{leaf}",
            self.addr,
            self.tg_name(),
            self.num,
            self.scale
        )
    }
    fn decode(w0: u64, w1: u64, addr_hi: u32) -> Self {
        Self {
            num: bits(w0, 16, 12) as u8,
            scale: bits(w0, 24, 20) as u8,
            leaf: w1 & 1 != 0,
            ttl: bits(w1, 9, 8) as u8,
            tg: bits(w1, 11, 10) as u8,
            addr: w1 & (u64::MAX >> (63 - addr_hi)) & !0xfff,
        }
    }
    fn encode(&self, addr_hi: u32) -> (u64, u64) {
        (
            field(self.num as u64, 16, 12) | field(self.scale as u64, 24, 20),
            self.leaf as u64
                | field(self.ttl as u64, 9, 8)
                | field(self.tg as u64, 11, 10)
                | (self.addr & (u64::MAX >> (63 - addr_hi)) & !0xfff),
        )
    }
}

/// CMD_SYNC completion signal (w0\[13:12\]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SyncCs {
    None = 0,
    Irq = 1,
    Sev = 2,
    /// The reserved encoding 3 (QEMU treats bit 0 as "IRQ").
    Reserved = 3,
}

impl SyncCs {
    /// As logs show it: `NONE`, `IRQ`, `SEV`, `RSVD`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Irq => "IRQ",
            Self::Sev => "SEV",
            Self::Reserved => "RSVD",
        }
    }
    fn from_bits(v: u64) -> Self {
        match v & 3 {
            0 => Self::None,
            1 => Self::Irq,
            2 => Self::Sev,
            _ => Self::Reserved,
        }
    }
}

/// A decoded CMD_SYNC.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CmdSync {
    pub cs: SyncCs,
    /// w0\[23:22\] shareability of the MSI write.
    pub msh: u8,
    /// w0\[27:24\] memory attributes of the MSI write.
    pub msiattr: u8,
    /// w0\[63:32\].
    pub msidata: u32,
    /// w1\[51:2\] as an address (bits \[1:0\] clear).
    pub msiaddr: u64,
}

/// One SMMUv3 command, every opcode of §9 typed. Decoding never fails.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    PrefetchCfg {
        sid: u32,
        ssv: bool,
        ssid: u32,
    },
    PrefetchAddr {
        sid: u32,
        ssv: bool,
        ssid: u32,
        size: u8,
        addr: u64,
    },
    CfgiSte {
        sid: u32,
        ssec: bool,
        leaf: bool,
    },
    /// Covers the 2^(range+1) SIDs aligned block containing `sid`; `range = 31` is CFGI_ALL.
    CfgiSteRange {
        sid: u32,
        ssec: bool,
        range: u8,
    },
    CfgiCd {
        sid: u32,
        ssid: u32,
        ssec: bool,
        leaf: bool,
    },
    CfgiCdAll {
        sid: u32,
        ssec: bool,
    },
    TlbiNhAll {
        vmid: u16,
    },
    TlbiNhAsid {
        vmid: u16,
        asid: u16,
    },
    TlbiNhVa {
        vmid: u16,
        asid: u16,
        range: VaRange,
    },
    TlbiNhVaa {
        vmid: u16,
        range: VaRange,
    },
    TlbiEl3All,
    TlbiEl3Va {
        range: VaRange,
    },
    TlbiEl2All,
    TlbiEl2Asid {
        asid: u16,
    },
    TlbiEl2Va {
        asid: u16,
        range: VaRange,
    },
    TlbiEl2Vaa {
        range: VaRange,
    },
    TlbiS12Vmall {
        vmid: u16,
    },
    TlbiS2Ipa {
        vmid: u16,
        range: VaRange,
    },
    TlbiNsnhAll,
    /// `size` is log2 of the span in 4 KiB pages (52 = everything).
    AtcInv {
        sid: u32,
        ssid: u32,
        ssv: bool,
        global: bool,
        size: u8,
        addr: u64,
    },
    PriResp {
        sid: u32,
        ssid: u32,
        ssv: bool,
        grpid: u16,
        resp: u8,
    },
    Resume {
        sid: u32,
        resp: u8,
        stag: u16,
    },
    StallTerm {
        sid: u32,
    },
    Sync(CmdSync),
    /// Any opcode the architecture does not define (0x00, 0x07, …): always CERROR_ILL.
    Unknown {
        opcode: u8,
        w0: u64,
        w1: u64,
    },
}

impl Command {
    /// Decode the two words of a command.
    #[inline]
    pub fn decode(w0: u64, w1: u64) -> Self {
        let opcode = w0 as u8;
        match opcode {
            op::PREFETCH_CFG..=op::CFGI_CD_ALL => Self::decode_config(opcode, w0, w1),
            op::TLBI_NH_ALL..=op::TLBI_NSNH_ALL => Self::decode_tlbi(opcode, w0, w1),
            _ => Self::decode_other(opcode, w0, w1),
        }
    }

    /// PREFETCH_* and CFGI_* (opcodes 0x01..=0x06).
    #[inline]
    fn decode_config(opcode: u8, w0: u64, w1: u64) -> Self {
        let f = Fields::of(w0);
        let (sid, ssid, ssv, ssec) = (f.sid, f.ssid, f.ssv, f.ssec);
        match opcode {
            op::PREFETCH_CFG => Self::PrefetchCfg { sid, ssv, ssid },
            op::PREFETCH_ADDR => Self::PrefetchAddr {
                sid,
                ssv,
                ssid,
                size: bits(w1, 4, 0) as u8,
                addr: w1 & !0xfff,
            },
            op::CFGI_STE => Self::CfgiSte {
                sid,
                ssec,
                leaf: w1 & 1 != 0,
            },
            op::CFGI_STE_RANGE => Self::CfgiSteRange {
                sid,
                ssec,
                range: bits(w1, 4, 0) as u8,
            },
            op::CFGI_CD => Self::CfgiCd {
                sid,
                ssid,
                ssec,
                leaf: w1 & 1 != 0,
            },
            op::CFGI_CD_ALL => Self::CfgiCdAll { sid, ssec },
            _ => Self::Unknown { opcode, w0, w1 },
        }
    }

    /// TLBI_* (opcodes 0x10..=0x30).
    #[inline]
    fn decode_tlbi(opcode: u8, w0: u64, w1: u64) -> Self {
        let Fields { vmid, asid, .. } = Fields::of(w0);
        let va = || VaRange::decode(w0, w1, 63);
        match opcode {
            op::TLBI_NH_ALL => Self::TlbiNhAll { vmid },
            op::TLBI_NH_ASID => Self::TlbiNhAsid { vmid, asid },
            op::TLBI_NH_VA => Self::TlbiNhVa {
                vmid,
                asid,
                range: va(),
            },
            op::TLBI_NH_VAA => Self::TlbiNhVaa { vmid, range: va() },
            op::TLBI_EL3_ALL => Self::TlbiEl3All,
            op::TLBI_EL3_VA => Self::TlbiEl3Va { range: va() },
            op::TLBI_EL2_ALL => Self::TlbiEl2All,
            op::TLBI_EL2_ASID => Self::TlbiEl2Asid { asid },
            op::TLBI_EL2_VA => Self::TlbiEl2Va { asid, range: va() },
            op::TLBI_EL2_VAA => Self::TlbiEl2Vaa { range: va() },
            op::TLBI_S12_VMALL => Self::TlbiS12Vmall { vmid },
            op::TLBI_S2_IPA => Self::TlbiS2Ipa {
                vmid,
                range: VaRange::decode(w0, w1, 51),
            },
            op::TLBI_NSNH_ALL => Self::TlbiNsnhAll,
            _ => Self::Unknown { opcode, w0, w1 },
        }
    }

    /// ATC_INV, PRI_RESP, RESUME, STALL_TERM, CMD_SYNC, and every undefined opcode.
    #[inline]
    fn decode_other(opcode: u8, w0: u64, w1: u64) -> Self {
        let Fields { sid, ssid, ssv, .. } = Fields::of(w0);
        match opcode {
            op::ATC_INV => Self::AtcInv {
                sid,
                ssid,
                ssv,
                global: w0 & (1 << 9) != 0,
                size: bits(w1, 5, 0) as u8,
                addr: w1 & !0xfff,
            },
            op::PRI_RESP => Self::PriResp {
                sid,
                ssid,
                ssv,
                grpid: bits(w1, 8, 0) as u16,
                resp: bits(w1, 13, 12) as u8,
            },
            op::RESUME => Self::Resume {
                sid,
                resp: bits(w0, 13, 12) as u8,
                stag: w1 as u16,
            },
            op::STALL_TERM => Self::StallTerm { sid },
            op::CMD_SYNC => Self::Sync(CmdSync {
                cs: SyncCs::from_bits(w0 >> 12),
                msh: bits(w0, 23, 22) as u8,
                msiattr: bits(w0, 27, 24) as u8,
                msidata: (w0 >> 32) as u32,
                msiaddr: w1 & 0x000f_ffff_ffff_fffc,
            }),
            _ => Self::Unknown { opcode, w0, w1 },
        }
    }

    /// Encode into two words; `decode(encode(c)) == c` for every command whose fields fit
    /// their widths.
    pub fn encode(&self) -> [u64; 2] {
        let (w0, w1) = match *self {
            Self::PrefetchCfg { .. }
            | Self::PrefetchAddr { .. }
            | Self::CfgiSte { .. }
            | Self::CfgiSteRange { .. }
            | Self::CfgiCd { .. }
            | Self::CfgiCdAll { .. } => self.encode_config(),
            Self::AtcInv { .. }
            | Self::PriResp { .. }
            | Self::Resume { .. }
            | Self::StallTerm { .. }
            | Self::Sync(_) => self.encode_other(),
            Self::Unknown { w0, w1, .. } => return [w0, w1],
            _ => self.encode_tlbi(),
        };
        [w0 | self.opcode() as u64, w1]
    }

    /// The fields of PREFETCH_* and CFGI_* (opcode not included).
    fn encode_config(&self) -> (u64, u64) {
        match *self {
            Self::PrefetchCfg { sid, ssv, ssid } => (put_sid(sid) | put_ssid(ssid, ssv), 0),
            Self::PrefetchAddr {
                sid,
                ssv,
                ssid,
                size,
                addr,
            } => (
                put_sid(sid) | put_ssid(ssid, ssv),
                field(size as u64, 4, 0) | (addr & !0xfff),
            ),
            Self::CfgiSte { sid, ssec, leaf } => (put_sid(sid) | flag(ssec, 10), leaf as u64),
            Self::CfgiSteRange { sid, ssec, range } => {
                (put_sid(sid) | flag(ssec, 10), field(range as u64, 4, 0))
            }
            Self::CfgiCd {
                sid,
                ssid,
                ssec,
                leaf,
            } => (
                put_sid(sid) | field(ssid as u64, 31, 12) | flag(ssec, 10),
                leaf as u64,
            ),
            Self::CfgiCdAll { sid, ssec } => (put_sid(sid) | flag(ssec, 10), 0),
            _ => (0, 0),
        }
    }

    /// The fields of TLBI_* (opcode not included).
    fn encode_tlbi(&self) -> (u64, u64) {
        let vmid = |v: u16| (v as u64) << 32;
        let asid = |a: u16| (a as u64) << 48;
        let with = |w0: u64, range: &VaRange, addr_hi: u32| {
            let (r0, r1) = range.encode(addr_hi);
            (w0 | r0, r1)
        };
        match *self {
            Self::TlbiNhAll { vmid: v } | Self::TlbiS12Vmall { vmid: v } => (vmid(v), 0),
            Self::TlbiNhAsid { vmid: v, asid: a } => (vmid(v) | asid(a), 0),
            Self::TlbiNhVa {
                vmid: v,
                asid: a,
                range,
            } => with(vmid(v) | asid(a), &range, 63),
            Self::TlbiNhVaa { vmid: v, range } => with(vmid(v), &range, 63),
            Self::TlbiEl3Va { range } | Self::TlbiEl2Vaa { range } => range.encode(63),
            Self::TlbiEl2Asid { asid: a } => (asid(a), 0),
            Self::TlbiEl2Va { asid: a, range } => with(asid(a), &range, 63),
            Self::TlbiS2Ipa { vmid: v, range } => with(vmid(v), &range, 51),
            _ => (0, 0),
        }
    }

    /// The fields of ATC_INV, PRI_RESP, RESUME, STALL_TERM and CMD_SYNC (opcode not included).
    fn encode_other(&self) -> (u64, u64) {
        match *self {
            Self::AtcInv {
                sid,
                ssid,
                ssv,
                global,
                size,
                addr,
            } => (
                put_sid(sid) | put_ssid(ssid, ssv) | flag(global, 9),
                field(size as u64, 5, 0) | (addr & !0xfff),
            ),
            Self::PriResp {
                sid,
                ssid,
                ssv,
                grpid,
                resp,
            } => (
                put_sid(sid) | put_ssid(ssid, ssv),
                field(grpid as u64, 8, 0) | field(resp as u64, 13, 12),
            ),
            Self::Resume { sid, resp, stag } => {
                (put_sid(sid) | field(resp as u64, 13, 12), stag as u64)
            }
            Self::StallTerm { sid } => (put_sid(sid), 0),
            Self::Sync(c) => (
                field(c.cs as u64, 13, 12)
                    | field(c.msh as u64, 23, 22)
                    | field(c.msiattr as u64, 27, 24)
                    | (c.msidata as u64) << 32,
                c.msiaddr & 0x000f_ffff_ffff_fffc,
            ),
            _ => (0, 0),
        }
    }

    /// The opcode byte.
    pub fn opcode(&self) -> u8 {
        match *self {
            Self::PrefetchCfg { .. } => op::PREFETCH_CFG,
            Self::PrefetchAddr { .. } => op::PREFETCH_ADDR,
            Self::CfgiSte { .. } => op::CFGI_STE,
            Self::CfgiSteRange { .. } => op::CFGI_STE_RANGE,
            Self::CfgiCd { .. } => op::CFGI_CD,
            Self::CfgiCdAll { .. } => op::CFGI_CD_ALL,
            Self::TlbiNhAll { .. } => op::TLBI_NH_ALL,
            Self::TlbiNhAsid { .. } => op::TLBI_NH_ASID,
            Self::TlbiNhVa { .. } => op::TLBI_NH_VA,
            Self::TlbiNhVaa { .. } => op::TLBI_NH_VAA,
            Self::TlbiEl3All => op::TLBI_EL3_ALL,
            Self::TlbiEl3Va { .. } => op::TLBI_EL3_VA,
            Self::TlbiEl2All => op::TLBI_EL2_ALL,
            Self::TlbiEl2Asid { .. } => op::TLBI_EL2_ASID,
            Self::TlbiEl2Va { .. } => op::TLBI_EL2_VA,
            Self::TlbiEl2Vaa { .. } => op::TLBI_EL2_VAA,
            Self::TlbiS12Vmall { .. } => op::TLBI_S12_VMALL,
            Self::TlbiS2Ipa { .. } => op::TLBI_S2_IPA,
            Self::TlbiNsnhAll => op::TLBI_NSNH_ALL,
            Self::AtcInv { .. } => op::ATC_INV,
            Self::PriResp { .. } => op::PRI_RESP,
            Self::Resume { .. } => op::RESUME,
            Self::StallTerm { .. } => op::STALL_TERM,
            Self::Sync(_) => op::CMD_SYNC,
            Self::Unknown { opcode, .. } => opcode,
        }
    }

    /// The command's name for statistics and logs: the opcode name, or `UNKNOWN(0xNN)`.
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        command_name(self.opcode().into())
    }

    /// One line for logs and the detail view, e.g.
    /// `TLBI_NH_VA vmid=1 asid=3 va=0x1000 tg=4K num=0 scale=0 leaf`. Opcodes whose fields
    /// the log does not name print the raw words they were decoded from (`raw`).
    pub fn describe(&self, raw: [u64; 2]) -> String {
        let name = self.name();
        match *self {
            Self::Sync(s) if s.cs == SyncCs::Irq => format!(
                "{name} cs=IRQ msiaddr={:#x} msidata={:#x}",
                s.msiaddr, s.msidata
            ),
            Self::Sync(s) => format!("{name} cs={}", s.cs.name()),
            Self::TlbiNhVa { vmid, asid, range } => {
                format!("{name} vmid={vmid} asid={asid} {}", range.describe("va"))
            }
            Self::TlbiNhVaa { vmid, range } => {
                format!("{name} vmid={vmid} {}", range.describe("va"))
            }
            Self::TlbiEl2Va { asid, range } => {
                format!("{name} asid={asid} {}", range.describe("va"))
            }
            Self::TlbiS2Ipa { vmid, range } => {
                format!("{name} vmid={vmid} {}", range.describe("ipa"))
            }
            Self::TlbiNhAsid { vmid, asid } => format!("{name} vmid={vmid} asid={asid}"),
            Self::TlbiEl2Asid { asid } => format!("{name} asid={asid}"),
            Self::TlbiNhAll { vmid } | Self::TlbiS12Vmall { vmid } => format!("{name} vmid={vmid}"),
            // Fields in the order the line prints them.
            Self::AtcInv {
                sid,
                ssv,
                ssid,
                addr,
                size,
                global,
            } => {
                let ssid = if ssv {
                    format!(" ssid={ssid:#x}")
                } else {
                    String::new()
                };
                let size = if size >= 52 {
                    "all".to_string()
                } else {
                    size.to_string()
                };
                let global = if global { " global" } else { "" };
                format!("{name} sid={sid:#x}{ssid} addr={addr:#x} size={size}{global}")
            }
            Self::CfgiSte { sid, leaf, .. } => {
                format!("{name} sid={sid:#x} leaf={}", u8::from(leaf))
            }
            Self::CfgiSteRange { range: 31, .. } => "CFGI_ALL".to_string(),
            Self::CfgiSteRange { sid, range, .. } => format!("{name} sid={sid:#x} range={range}"),
            Self::CfgiCd {
                sid, ssid, leaf, ..
            } => {
                format!("{name} sid={sid:#x} ssid={ssid:#x} leaf={}", u8::from(leaf))
            }
            Self::CfgiCdAll { sid, .. } | Self::PrefetchCfg { sid, .. } => {
                format!("{name} sid={sid:#x}")
            }
            Self::TlbiNsnhAll | Self::TlbiEl2All => name.into_owned(),
            _ => format!("{name} w0={:#018x} w1={:#018x}", raw[0], raw[1]),
        }
    }

    /// Convenience builders used by tests, benchmarks and the simulated guest.
    pub fn tlbi_nh_va(vmid: u16, asid: u16, addr: u64, leaf: bool) -> Self {
        Self::TlbiNhVa {
            vmid,
            asid,
            range: VaRange {
                addr,
                leaf,
                ..Default::default()
            },
        }
    }
    /// A CMD_SYNC with CS=NONE as Linux builds it for VCMDQs (MSH inner-shareable, MSIATTR 0xF).
    pub fn sync_none() -> Self {
        Self::Sync(CmdSync {
            cs: SyncCs::None,
            msh: 3,
            msiattr: 0xf,
            msidata: 0,
            msiaddr: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(w0: u64, w1: u64) -> Command {
        Command::decode(w0, w1)
    }

    #[test]
    fn prefetch_and_cfgi_fields() {
        assert_eq!(
            d(0x1234_5678_0000_0801 | 0xabcd_e000, 0),
            Command::PrefetchCfg {
                sid: 0x1234_5678,
                ssv: true,
                ssid: 0xabcde
            }
        );
        assert_eq!(
            d(0x0000_0007_0000_0002, 0xdead_b000 | 0x13),
            Command::PrefetchAddr {
                sid: 7,
                ssv: false,
                ssid: 0,
                size: 0x13,
                addr: 0xdead_b000
            }
        );
        assert_eq!(
            d(0x0000_0042_0000_0403, 1),
            Command::CfgiSte {
                sid: 0x42,
                ssec: true,
                leaf: true
            }
        );
        assert_eq!(
            d(0x0000_0000_0000_0004, 31),
            Command::CfgiSteRange {
                sid: 0,
                ssec: false,
                range: 31
            }
        );
        assert_eq!(
            d(0x0000_0009_0000_5005, 0),
            Command::CfgiCd {
                sid: 9,
                ssid: 5,
                ssec: false,
                leaf: false
            }
        );
        assert_eq!(
            d(0x0000_0009_0000_0006, 0),
            Command::CfgiCdAll {
                sid: 9,
                ssec: false
            }
        );
    }

    #[test]
    fn tlbi_fields() {
        assert_eq!(d(0xffff_0003_0000_0010, 0), Command::TlbiNhAll { vmid: 3 });
        assert_eq!(
            d(0x00aa_0003_0000_0011, 0),
            Command::TlbiNhAsid {
                vmid: 3,
                asid: 0xaa
            }
        );
        // NUM=5 (w0[16:12]), SCALE=2 (w0[24:20]), LEAF, TTL=3, TG=1, VA=0x1234_5000
        let w0 = 0x00aa_0003_0000_0012 | 5 << 12 | 2 << 20;
        let w1 = 0x1234_5000 | 1 | 3 << 8 | 1 << 10;
        let c = d(w0, w1);
        let range = VaRange {
            num: 5,
            scale: 2,
            leaf: true,
            ttl: 3,
            tg: 1,
            addr: 0x1234_5000,
        };
        assert_eq!(
            c,
            Command::TlbiNhVa {
                vmid: 3,
                asid: 0xaa,
                range
            }
        );
        assert!(range.is_range());
        assert_eq!(range.num_pages(), 24);
        // TG=0: single address whatever NUM/SCALE say
        let single = VaRange {
            num: 5,
            scale: 2,
            ..range
        };
        let single = VaRange { tg: 0, ..single };
        assert!(!single.is_range());
        assert_eq!(single.num_pages(), 1);
        assert_eq!(
            d(w0 & !0xff | 0x13, w1),
            Command::TlbiNhVaa { vmid: 3, range }
        );
        assert_eq!(d(0x18, 0), Command::TlbiEl3All);
        assert_eq!(
            d(0x1a, 0x5000),
            Command::TlbiEl3Va {
                range: VaRange {
                    addr: 0x5000,
                    ..Default::default()
                }
            }
        );
        assert_eq!(d(0x20, 0), Command::TlbiEl2All);
        assert_eq!(
            d(0x0007_0000_0000_0021, 0),
            Command::TlbiEl2Asid { asid: 7 }
        );
        assert_eq!(
            d(0x0007_0000_0000_0022, 0x6000),
            Command::TlbiEl2Va {
                asid: 7,
                range: VaRange {
                    addr: 0x6000,
                    ..Default::default()
                }
            }
        );
        assert_eq!(
            d(0x23, 0x7000),
            Command::TlbiEl2Vaa {
                range: VaRange {
                    addr: 0x7000,
                    ..Default::default()
                }
            }
        );
        assert_eq!(
            d(0x0000_0004_0000_0028, 0),
            Command::TlbiS12Vmall { vmid: 4 }
        );
        // IPA is w1[51:12]: bits above 51 are not part of it
        assert_eq!(
            d(0x0000_0004_0000_002a, 0xfff0_0000_8000_0000),
            Command::TlbiS2Ipa {
                vmid: 4,
                range: VaRange {
                    addr: 0x0000_0000_8000_0000,
                    ..Default::default()
                }
            }
        );
        assert_eq!(d(0x30, 0), Command::TlbiNsnhAll);
    }

    #[test]
    fn atc_pri_resume_stall_sync_fields() {
        assert_eq!(
            d(0x0000_0010_0000_3a40, 0x8000_0000 | 52),
            Command::AtcInv {
                sid: 0x10,
                ssid: 3,
                ssv: true,
                global: true,
                size: 52,
                addr: 0x8000_0000
            }
        );
        assert_eq!(
            d(0x0000_0010_0000_3841, 0x1ff | 2 << 12),
            Command::PriResp {
                sid: 0x10,
                ssid: 3,
                ssv: true,
                grpid: 0x1ff,
                resp: 2
            }
        );
        assert_eq!(
            d(0x0000_0010_0000_1044, 0xbeef),
            Command::Resume {
                sid: 0x10,
                resp: 1,
                stag: 0xbeef
            }
        );
        assert_eq!(
            d(0x0000_0010_0000_0045, 0),
            Command::StallTerm { sid: 0x10 }
        );
        // Linux VCMDQ sync: CS=NONE, MSH=3, MSIATTR=0xF, MSIADDR = own slot
        let w0 = 0x46 | 3 << 22 | 0xf << 24;
        assert_eq!(
            d(w0, 0x4000_1230),
            Command::Sync(CmdSync {
                cs: SyncCs::None,
                msh: 3,
                msiattr: 0xf,
                msidata: 0,
                msiaddr: 0x4000_1230
            })
        );
        assert_eq!(
            d(0x46 | 1 << 12, 0),
            Command::Sync(CmdSync {
                cs: SyncCs::Irq,
                msh: 0,
                msiattr: 0,
                msidata: 0,
                msiaddr: 0
            })
        );
        let Command::Sync(s) = d(0x46 | 2 << 12, 0) else {
            panic!()
        };
        assert_eq!(s.cs, SyncCs::Sev);
        assert_eq!(Command::sync_none().encode(), [w0, 0]);
    }

    #[test]
    fn unknown_opcodes_are_a_variant() {
        for opc in [0x00u8, 0x07, 0x14, 0x47, 0xff] {
            assert!(
                matches!(d(opc as u64, 5), Command::Unknown { opcode, w1: 5, .. } if opcode == opc)
            );
            assert!(opcode_name(opc).is_none());
        }
        assert_eq!(command_name(0x12), "TLBI_NH_VA");
        assert_eq!(command_name(0x07), "UNKNOWN(0x07)");
    }

    #[test]
    fn every_named_opcode_decodes_to_a_typed_command() {
        for opc in 0..=255u8 {
            let c = d(opc as u64, 0);
            assert_eq!(c.opcode(), opc);
            assert_eq!(
                opcode_name(opc).is_some(),
                !matches!(c, Command::Unknown { .. }),
                "{opc:#x}"
            );
        }
    }

    proptest! {
        /// Re-encoding a decoded command keeps every bit the decoder looks at, so decode is
        /// stable under encode.
        #[test]
        fn decode_encode_decode_is_stable(w0 in any::<u64>(), w1 in any::<u64>()) {
            let c = Command::decode(w0, w1);
            let [e0, e1] = c.encode();
            prop_assert_eq!(Command::decode(e0, e1), c);
        }
    }
}
