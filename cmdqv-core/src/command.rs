//! The SMMUv3 command codec: 16-byte commands (two little-endian u64 words), opcode in w0[7:0].
//!
//! Field positions follow Linux's `CMDQ_*` masks and QEMU's `CMD_*` extractors
//! (../shared/reference/cmdqv-hw.md §9). Decoding never fails: unknown opcodes are a variant.

/// Opcode values (w0[7:0]).
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

/// Name of the command in `w0` for statistics: the opcode name, or `UNKNOWN(0xNN)`.
pub fn command_name(w0: u64) -> std::borrow::Cow<'static, str> {
    let opcode = w0 as u8;
    match opcode_name(opcode) {
        Some(n) => n.into(),
        None => format!("UNKNOWN(0x{opcode:02x})").into(),
    }
}
