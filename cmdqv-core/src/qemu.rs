//! Tracing a real QEMU: what its own trace log says ([`parse_trace_log`]), which functions of a
//! QEMU binary a uprobe can reach ([`discover_symbols`], [`choose_probe_set`]), and where the
//! SMMU's command queue lives in guest memory ([`decode_cmdq_base`]).
//!
//! QEMU's log (`-trace 'smmuv3_cmdq_*' -trace 'smmuv3_*_mmio' -D FILE`) is the ground truth the
//! eBPF tracer is checked against: same run, same counts, exactly. Nothing here touches the
//! process; the loader in cmdqv-tui turns a [`ProbeChoice`] into attached uprobes.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::regs::smmu as sr;

/// SMMUv3 register offsets (page 0) the QEMU target cares about, from the one register table.
pub mod smmu_reg {
    pub use crate::regs::smmu::{CMDQ_BASE, CMDQ_CONS, CMDQ_PROD, CR0, GERRORN};
    /// Page 1 aliases page 0 in QEMU (offset bit 16 is ignored).
    pub const PAGE1_BIT: u64 = crate::regs::smmu::PAGE1_ALIAS;
}

/// Physical base of the SMMUv3 register page on QEMU's `virt` machine.
pub const VIRT_SMMU_BASE: u64 = 0x0905_0000;

/// QEMU clamps CMDQ_BASE.LOG2SIZE to its SMMU_CMDQS (19).
pub const QEMU_CMDQS_MAX: u8 = sr::QUEUE_LOG2SIZE_MAX as u8;

// ---------------------------------------------------------------------------------------------
// CMDQ_BASE

/// The command queue's place in guest memory, from a CMDQ_BASE value.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueWindow {
    /// Guest-physical address of entry 0 (CMDQ_BASE.ADDR, bits [51:5]).
    pub base: u64,
    /// CMDQ_BASE.LOG2SIZE (bits [4:0]) as QEMU uses it (clamped to [`QEMU_CMDQS_MAX`]).
    pub log2size: u8,
}

impl QueueWindow {
    /// Number of 16-byte entries.
    pub fn entries(&self) -> u64 {
        1 << self.log2size
    }
    /// One past the last byte of the queue.
    pub fn end(&self) -> u64 {
        self.base + (16u64 << self.log2size)
    }
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }
    /// Entry index of a fetch at `addr` (None outside the queue or not on an entry boundary).
    pub fn index_of(&self, addr: u64) -> Option<u32> {
        (self.contains(addr) && (addr - self.base).is_multiple_of(16))
            .then(|| ((addr - self.base) / 16) as u32)
    }
}

/// Decodes a 64-bit CMDQ_BASE write: ADDR[51:5], LOG2SIZE[4:0] (RA, bit 62, is a cache hint).
pub fn decode_cmdq_base(value: u64) -> QueueWindow {
    QueueWindow {
        base: value & sr::Q_BASE_ADDR_MASK,
        log2size: ((value & sr::Q_BASE_LOG2SIZE_MASK) as u8).min(QEMU_CMDQS_MAX),
    }
}

// ---------------------------------------------------------------------------------------------
// QEMU's trace log

/// What one QEMU trace log says about the SMMU's command queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuTraceCounts {
    /// Commands QEMU consumed (`smmuv3_cmdq_opcode` lines).
    pub commands: u64,
    /// Per opcode, in cmdqv's names (see [`normalize_opcode_name`]).
    pub opcodes: BTreeMap<String, u64>,
    /// Guest writes of CMDQ_PROD (0x98).
    pub prod_writes: u64,
    /// Guest reads of CMDQ_CONS (0x9c).
    pub cons_reads: u64,
    /// `smmuv3_cmdq_consume_error` lines.
    pub consume_errors: u64,
    /// Values written to CMDQ_BASE (0x90), in order.
    pub cmdq_base_writes: Vec<u64>,
    /// Every SMMU register write / read QEMU logged.
    pub mmio_writes: u64,
    pub mmio_reads: u64,
    /// Lines that were not one of the events above (other smmuv3_* events, text, noise).
    pub other_lines: u64,
}

impl QemuTraceCounts {
    /// The queue window of the last CMDQ_BASE write, if any.
    pub fn queue_window(&self) -> Option<QueueWindow> {
        self.cmdq_base_writes.last().map(|&v| decode_cmdq_base(v))
    }
}

/// Maps QEMU's command name (`smmu_cmd_string`, e.g. `SMMU_CMD_TLBI_NH_VA`) to cmdqv's
/// (`crate::command::opcode_name`). The mapping, checked against the strings in QEMU 7.2 and
/// 10.0.2:
///
/// | QEMU | cmdqv | opcode |
/// |---|---|---|
/// | `SMMU_CMD_PREFETCH_CONFIG` | `PREFETCH_CFG` | 0x01 |
/// | `SMMU_CMD_SYNC` | `CMD_SYNC` | 0x46 |
/// | `SMMU_CMD_CFGI_ALL` | `UNKNOWN(0x07)` | QEMU names 0x07 so but never handles it; real CFGI_ALL is CFGI_STE_RANGE (0x04) with RANGE=31 |
/// | `UNKNOWN` (QEMU's word for an opcode outside its table) | `UNKNOWN` | — |
/// | `SMMU_CMD_<X>` for every other X | `<X>` (same name) | as in §9 |
pub fn normalize_opcode_name(qemu: &str) -> String {
    let n = qemu.trim();
    let n = n.strip_prefix("SMMU_CMD_").unwrap_or(n);
    match n {
        "PREFETCH_CONFIG" => "PREFETCH_CFG".into(),
        "SYNC" => "CMD_SYNC".into(),
        "CFGI_ALL" => "UNKNOWN(0x07)".into(),
        other => other.into(),
    }
}

/// Strips the `pid@secs.usecs:` prefix QEMU adds with `-msg timestamp=on` (or `-d trace:` to
/// stderr in some versions).
fn strip_prefix(line: &str) -> &str {
    if let Some((head, rest)) = line.split_once(':') {
        if let Some((pid, ts)) = head.split_once('@') {
            if pid.bytes().all(|b| b.is_ascii_digit())
                && ts.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            {
                return rest.trim_start();
            }
        }
    }
    line
}

fn hex_field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let rest = line[at..].trim_start();
    let rest = rest.strip_prefix("0x").unwrap_or(rest);
    let end = rest
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(rest.len());
    u64::from_str_radix(&rest[..end], 16).ok()
}

/// Counts the command-queue facts of a QEMU trace log (QEMU 7.2 and 10.0 formats; other lines
/// are counted, never an error).
pub fn parse_trace_log(text: &str) -> QemuTraceCounts {
    let mut c = QemuTraceCounts::default();
    for raw in text.lines() {
        let line = strip_prefix(raw.trim_end());
        if line.is_empty() {
            continue;
        }
        let (event, rest) = line.split_once(' ').unwrap_or((line, ""));
        match event {
            "smmuv3_cmdq_opcode" => {
                // "smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_VA"
                let name = rest.trim().trim_start_matches("<---").trim();
                c.commands += 1;
                *c.opcodes.entry(normalize_opcode_name(name)).or_default() += 1;
            }
            "smmuv3_cmdq_consume_error" => c.consume_errors += 1,
            "smmuv3_write_mmio" | "smmuv3_read_mmio" => {
                let write = event == "smmuv3_write_mmio";
                let (Some(addr), Some(val)) = (hex_field(rest, "addr:"), hex_field(rest, "val:"))
                else {
                    c.other_lines += 1;
                    continue;
                };
                let off = addr & !smmu_reg::PAGE1_BIT;
                if write {
                    c.mmio_writes += 1;
                    match off {
                        smmu_reg::CMDQ_PROD => c.prod_writes += 1,
                        smmu_reg::CMDQ_BASE => c.cmdq_base_writes.push(val),
                        _ => {}
                    }
                } else {
                    c.mmio_reads += 1;
                    if off == smmu_reg::CMDQ_CONS {
                        c.cons_reads += 1;
                    }
                }
            }
            _ => c.other_lines += 1,
        }
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Captured command streams (fixtures)

/// Reads a command stream: consecutive 16-byte records, w0 then w1, little-endian (the layout of
/// the queue itself). A trailing partial record is an error.
pub fn read_command_stream(bytes: &[u8]) -> Result<Vec<[u64; 2]>, QemuError> {
    if !bytes.len().is_multiple_of(16) {
        return Err(QemuError::Stream(format!(
            "{} bytes is not a whole number of 16-byte commands",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|c| {
            let w = |o: usize| u64::from_le_bytes(c[o..o + 8].try_into().unwrap_or([0; 8]));
            [w(0), w(8)]
        })
        .collect())
}

/// Writes commands in the layout [`read_command_stream`] reads.
pub fn write_command_stream(cmds: &[[u64; 2]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cmds.len() * 16);
    for [w0, w1] in cmds {
        out.extend_from_slice(&w0.to_le_bytes());
        out.extend_from_slice(&w1.to_le_bytes());
    }
    out
}

/// Per-opcode counts of a command stream, in cmdqv's names.
pub fn count_opcodes<'a>(cmds: impl IntoIterator<Item = &'a [u64; 2]>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for [w0, _] in cmds {
        *m.entry(crate::command::command_name(*w0).into_owned())
            .or_default() += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Symbols and the probe set

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot read {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{path} is not an ELF binary cmdqv can read: {err}")]
    NotElf { path: String, err: String },
    #[error("bad command stream: {0}")]
    Stream(String),
}

/// Functions of a QEMU binary the QEMU target can use, best first within each role.
pub const PROBE_SYMBOLS: &[&str] = &[
    "tegra241_cmdqv_read",
    "tegra241_cmdqv_write",
    "smmu_read_mmio",
    "smmu_write_mmio",
    "memory_region_dispatch_read",
    "memory_region_dispatch_write",
    "address_space_rw",
    "qemu_log",
];

/// Where a symbol was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolInfo {
    pub address: u64,
    pub size: u64,
    /// `symtab` (a binary built from source keeps it) or `dynsym` (exported; survives strip).
    pub table: String,
}

/// The probe-relevant symbols of one binary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinarySymbols {
    pub path: String,
    /// Of [`PROBE_SYMBOLS`], the ones defined in the binary.
    pub found: BTreeMap<String, SymbolInfo>,
    /// No `.symtab` (static functions are then unreachable).
    pub stripped: bool,
    pub dynsym_count: usize,
    pub symtab_count: usize,
}

impl BinarySymbols {
    pub fn has(&self, sym: &str) -> bool {
        self.found.contains_key(sym)
    }
}

/// Reads the symbol tables of the binary at `path`.
pub fn discover_symbols(path: &Path) -> Result<BinarySymbols, QemuError> {
    let bytes = std::fs::read(path).map_err(|err| QemuError::Io {
        path: path.display().to_string(),
        err,
    })?;
    discover_symbols_in(&path.display().to_string(), &bytes)
}

/// [`discover_symbols`] on bytes already in memory.
pub fn discover_symbols_in(path: &str, bytes: &[u8]) -> Result<BinarySymbols, QemuError> {
    use object::{Object as _, ObjectSymbol as _};
    let file = object::File::parse(bytes).map_err(|e| QemuError::NotElf {
        path: path.to_string(),
        err: e.to_string(),
    })?;
    if file.format() != object::BinaryFormat::Elf {
        return Err(QemuError::NotElf {
            path: path.to_string(),
            err: format!("{:?} object, uprobes need ELF", file.format()),
        });
    }
    let mut out = BinarySymbols {
        path: path.to_string(),
        ..Default::default()
    };
    let mut visit = |sym: object::Symbol<'_, '_>, table: &str| {
        if sym.is_undefined() || sym.address() == 0 {
            return;
        }
        let Ok(name) = sym.name() else { return };
        if PROBE_SYMBOLS.contains(&name) {
            out.found
                .entry(name.to_string())
                .or_insert_with(|| SymbolInfo {
                    address: sym.address(),
                    size: sym.size(),
                    table: table.to_string(),
                });
        }
    };
    for s in file.symbols() {
        visit(s, "symtab");
    }
    for s in file.dynamic_symbols() {
        visit(s, "dynsym");
    }
    out.symtab_count = file.symbols().count();
    out.dynsym_count = file.dynamic_symbols().count();
    out.stripped = out.symtab_count == 0;
    Ok(out)
}

/// Which family of probes to use on a QEMU binary, best first.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeSet {
    /// The device's own MMIO handlers (`smmu_*_mmio`, `tegra241_cmdqv_*`): only a QEMU with a
    /// symbol table has them; no region filtering needed.
    DeviceHandlers,
    /// `memory_region_dispatch_{read,write}` filtered to the SMMU's MemoryRegion, plus
    /// `address_space_rw` for the command fetches: works on a stock, stripped Debian QEMU.
    Dispatch,
    /// Only `qemu_log`: events exist only if QEMU was started with `-trace smmuv3_*`.
    QemuLog,
    /// Nothing usable.
    None,
}

/// How a probe attaches.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    Entry,
    Return,
}

/// One uprobe the loader should attach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedProbe {
    pub symbol: String,
    /// Program name in the eBPF object.
    pub program: String,
    pub kind: ProbeKind,
    /// What the probe gives, in the words the UI shows.
    pub purpose: String,
}

/// The chosen probe set with the reasons, as data the UI shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeChoice {
    pub set: ProbeSet,
    pub probes: Vec<PlannedProbe>,
    pub reasons: Vec<String>,
}

/// eBPF program names of the QEMU probes (cmdqv-ebpf/probes/src/qemu.rs).
pub mod programs {
    pub const DISPATCH_WRITE: &str = "cmdqv_qemu_mr_write";
    pub const DISPATCH_READ: &str = "cmdqv_qemu_mr_read";
    pub const DISPATCH_READ_RET: &str = "cmdqv_qemu_mr_read_ret";
    pub const AS_RW: &str = "cmdqv_qemu_as_rw";
    pub const AS_RW_RET: &str = "cmdqv_qemu_as_rw_ret";
    pub const SMMU_WRITE: &str = "cmdqv_qemu_smmu_write";
    pub const CMDQV_WRITE: &str = "cmdqv_qemu_cmdqv_write";
}

/// One planned uprobe as data: symbol, eBPF program, kind, and what it gives (in the UI's words).
type ProbeSpec = (&'static str, &'static str, ProbeKind, &'static str);

/// The probes of each family, best first within it.
const SMMU_HANDLER: ProbeSpec = (
    "smmu_write_mmio",
    programs::SMMU_WRITE,
    ProbeKind::Entry,
    "SMMU register writes",
);
const CMDQV_HANDLER: ProbeSpec = (
    "tegra241_cmdqv_write",
    programs::CMDQV_WRITE,
    ProbeKind::Entry,
    "CMDQV register writes",
);
const DISPATCH_WRITE: ProbeSpec = (
    "memory_region_dispatch_write",
    programs::DISPATCH_WRITE,
    ProbeKind::Entry,
    "SMMU register writes (every MMIO write is filtered in the kernel)",
);
const DISPATCH_READS: [ProbeSpec; 2] = [
    (
        "memory_region_dispatch_read",
        programs::DISPATCH_READ,
        ProbeKind::Entry,
        "SMMU register reads: offset",
    ),
    (
        "memory_region_dispatch_read",
        programs::DISPATCH_READ_RET,
        ProbeKind::Return,
        "SMMU register reads: value",
    ),
];
const COMMAND_FETCHES: [ProbeSpec; 2] = [
    (
        "address_space_rw",
        programs::AS_RW,
        ProbeKind::Entry,
        "command fetches: 16-byte DMA reads inside the queue",
    ),
    (
        "address_space_rw",
        programs::AS_RW_RET,
        ProbeKind::Return,
        "command fetches: the 16 bytes",
    ),
];

impl ProbeChoice {
    fn plan(&mut self, specs: &[ProbeSpec]) {
        self.probes.extend(
            specs
                .iter()
                .map(|&(symbol, program, kind, purpose)| PlannedProbe {
                    symbol: symbol.into(),
                    program: program.into(),
                    kind,
                    purpose: purpose.into(),
                }),
        );
    }
}

/// Chooses the best probe set the binary's symbols allow. `mmio_reads` asks for the read path
/// too (a uprobe + uretprobe pair on every MMIO read of every device: the costliest probe).
pub fn choose_probe_set(syms: &BinarySymbols, mmio_reads: bool) -> ProbeChoice {
    let mut plan = ProbeChoice {
        set: ProbeSet::None,
        probes: Vec::new(),
        reasons: Vec::new(),
    };
    let commands = syms.has("address_space_rw");
    if !commands {
        plan.reasons.push(
            "address_space_rw not found: the raw commands cannot be captured (MMIO only)".into(),
        );
    }
    plan.set = if syms.has("smmu_write_mmio") {
        plan_device_handlers(syms, mmio_reads, &mut plan)
    } else if syms.has("memory_region_dispatch_write") {
        plan_dispatch(syms, mmio_reads, &mut plan)
    } else if syms.has("qemu_log") {
        plan.reasons.push(
            "no MMIO entry point found; only qemu_log, which needs QEMU started with \
             -trace 'smmuv3_*' (not probed by cmdqv yet)"
                .into(),
        );
        plan.set = ProbeSet::QemuLog;
        return plan;
    } else {
        plan.reasons.push(format!(
            "none of {} is defined in {}: is this a QEMU binary?",
            PROBE_SYMBOLS.join(", "),
            syms.path
        ));
        return plan;
    };
    if commands {
        plan.plan(&COMMAND_FETCHES);
    }
    plan
}

/// The device's own handlers (`smmu_write_mmio`, and `tegra241_cmdqv_write` where it exists).
fn plan_device_handlers(
    syms: &BinarySymbols,
    mmio_reads: bool,
    plan: &mut ProbeChoice,
) -> ProbeSet {
    plan.reasons.push(format!(
        "smmu_write_mmio found in {}: the SMMU's own handler, no region filtering",
        if syms.found["smmu_write_mmio"].table == "symtab" {
            "the symbol table"
        } else {
            "the dynamic symbols"
        }
    ));
    plan.plan(&[SMMU_HANDLER]);
    if syms.has("tegra241_cmdqv_write") {
        plan.reasons
            .push("tegra241_cmdqv_write found: CMDQV register writes too".into());
        plan.plan(&[CMDQV_HANDLER]);
    }
    if mmio_reads {
        plan.reasons.push(
            "register reads through the device handlers are not probed yet (writes only)".into(),
        );
    }
    ProbeSet::DeviceHandlers
}

/// `memory_region_dispatch_{write,read}`, filtered in the kernel to the SMMU's MemoryRegion.
fn plan_dispatch(syms: &BinarySymbols, mmio_reads: bool, plan: &mut ProbeChoice) -> ProbeSet {
    plan.reasons.push(format!(
        "{}: smmu_write_mmio is static and has no symbol; using memory_region_dispatch_write \
         filtered in the kernel to the SMMU's MemoryRegion",
        if syms.stripped {
            "stripped binary"
        } else {
            "no device handler symbols"
        }
    ));
    plan.plan(&[DISPATCH_WRITE]);
    if mmio_reads && syms.has("memory_region_dispatch_read") {
        plan.plan(&DISPATCH_READS);
    } else if mmio_reads {
        plan.reasons
            .push("memory_region_dispatch_read not found: no register reads".into());
    }
    ProbeSet::Dispatch
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG_7_2: &str = "\
smmuv3_read_mmio addr: 0x20 val:0x0 size: 0x4(0)
smmuv3_write_mmio addr: 0x20 val:0x0 size: 0x4(0)
smmuv3_write_mmio addr: 0x90 val:0x400000007ab00010 size: 0x8(0)
smmuv3_cmdq_consume_out prod:0, cons:0, prod_wrap:0, cons_wrap:0 
smmuv3_cmdq_consume prod=2 cons=0 prod.wrap=0 cons.wrap=0
smmuv3_cmdq_opcode <--- SMMU_CMD_CFGI_STE_RANGE
smmuv3_cmdq_cfgi_ste_range start=0x0, end=0xffffffff
smmuv3_cmdq_consume prod=2 cons=1 prod.wrap=0 cons.wrap=0
smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC
smmuv3_cmdq_consume_out prod:2, cons:2, prod_wrap:0, cons_wrap:0 
smmuv3_write_mmio addr: 0x98 val:0x2 size: 0x4(0)
smmuv3_read_mmio addr: 0x9c val:0x2 size: 0x4(0)
smmuv3_cmdq_opcode <--- SMMU_CMD_PREFETCH_CONFIG
smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_VA
smmuv3_s1_range_inval vmid=0 asid=1 addr=0xfffff000 tg=1 num_pages=0x1 ttl=3 leaf=1
smmuv3_cmdq_consume_error Error on SMMU_CMD_CFGI_ALL command execution: 1
";

    #[test]
    fn parses_qemu_7_2_log() {
        let c = parse_trace_log(LOG_7_2);
        assert_eq!(c.commands, 4);
        assert_eq!(c.opcodes["CFGI_STE_RANGE"], 1);
        assert_eq!(c.opcodes["CMD_SYNC"], 1);
        assert_eq!(c.opcodes["PREFETCH_CFG"], 1);
        assert_eq!(c.opcodes["TLBI_NH_VA"], 1);
        assert_eq!(c.prod_writes, 1);
        assert_eq!(c.cons_reads, 1);
        assert_eq!(c.consume_errors, 1);
        assert_eq!(c.cmdq_base_writes, vec![0x4000_0000_7ab0_0010]);
        assert_eq!(c.mmio_writes, 3);
        assert_eq!(c.mmio_reads, 2);
        let w = c.queue_window().unwrap();
        assert_eq!((w.base, w.log2size), (0x7ab0_0000, 16));
    }

    #[test]
    fn parses_qemu_10_0_log_with_timestamps() {
        let log = "\
1234@1732550000.000001:smmuv3_write_mmio addr: 0x98 val:0x5 size: 0x4(0)
1234@1732550000.000002:smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_ASID
smmuv3_range_inval vmid=0 asid=1 addr=0x1000 tg=1 num_pages=0x1 ttl=3 leaf=1 stage=1
smmuv3_cmdq_tlbi_nsnh 
smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NSNH_ALL
smmuv3_write_mmio addr: 0x10098 val:0x6 size: 0x4(0)
";
        let c = parse_trace_log(log);
        assert_eq!(c.commands, 2);
        assert_eq!(c.opcodes["TLBI_NH_ASID"], 1);
        assert_eq!(c.opcodes["TLBI_NSNH_ALL"], 1);
        assert_eq!(c.prod_writes, 2);
        assert_eq!(c.other_lines, 2);
    }

    #[test]
    fn qemu_names_map_to_cmdqv_names() {
        use crate::command::opcode_name;
        // Every QEMU name (strings of the 7.2 and 10.0.2 binaries) maps to one of ours.
        let qemu = [
            ("SMMU_CMD_PREFETCH_CONFIG", 0x01),
            ("SMMU_CMD_PREFETCH_ADDR", 0x02),
            ("SMMU_CMD_CFGI_STE", 0x03),
            ("SMMU_CMD_CFGI_STE_RANGE", 0x04),
            ("SMMU_CMD_CFGI_CD", 0x05),
            ("SMMU_CMD_CFGI_CD_ALL", 0x06),
            ("SMMU_CMD_TLBI_NH_ALL", 0x10),
            ("SMMU_CMD_TLBI_NH_ASID", 0x11),
            ("SMMU_CMD_TLBI_NH_VA", 0x12),
            ("SMMU_CMD_TLBI_NH_VAA", 0x13),
            ("SMMU_CMD_TLBI_EL3_ALL", 0x18),
            ("SMMU_CMD_TLBI_EL3_VA", 0x1a),
            ("SMMU_CMD_TLBI_EL2_ALL", 0x20),
            ("SMMU_CMD_TLBI_EL2_ASID", 0x21),
            ("SMMU_CMD_TLBI_EL2_VA", 0x22),
            ("SMMU_CMD_TLBI_EL2_VAA", 0x23),
            ("SMMU_CMD_TLBI_S12_VMALL", 0x28),
            ("SMMU_CMD_TLBI_S2_IPA", 0x2a),
            ("SMMU_CMD_TLBI_NSNH_ALL", 0x30),
            ("SMMU_CMD_ATC_INV", 0x40),
            ("SMMU_CMD_PRI_RESP", 0x41),
            ("SMMU_CMD_RESUME", 0x44),
            ("SMMU_CMD_STALL_TERM", 0x45),
            ("SMMU_CMD_SYNC", 0x46),
        ];
        for (q, op) in qemu {
            assert_eq!(
                normalize_opcode_name(q),
                opcode_name(op).unwrap(),
                "{q} (0x{op:02x})"
            );
        }
        assert_eq!(
            normalize_opcode_name("SMMU_CMD_CFGI_ALL"),
            crate::command::command_name(0x07)
        );
    }

    #[test]
    fn cmdq_base_decodes_like_qemu() {
        let w = decode_cmdq_base(0x4000_0000_7ab0_0010);
        assert_eq!(w.base, 0x7ab0_0000);
        assert_eq!(w.log2size, 16);
        assert_eq!(w.entries(), 65536);
        assert_eq!(w.end(), 0x7ab0_0000 + (1 << 20));
        assert_eq!(w.index_of(0x7ab0_0020), Some(2));
        assert_eq!(w.index_of(0x7ab0_0028), None);
        assert_eq!(w.index_of(w.end()), None);
        // Bits above 51 are not address; log2size is clamped to 19.
        let w = decode_cmdq_base(0xfff0_0000_0000_001f);
        assert_eq!((w.base, w.log2size), (0, 19));
    }

    #[test]
    fn command_stream_round_trips() {
        let cmds = [[0x46u64, 0], [0x1_0000_0012, 0xdead_b000]];
        let bytes = write_command_stream(&cmds);
        assert_eq!(read_command_stream(&bytes).unwrap(), cmds);
        assert!(read_command_stream(&bytes[..17]).is_err());
        let counts = count_opcodes(&cmds);
        assert_eq!(counts["CMD_SYNC"], 1);
        assert_eq!(counts["TLBI_NH_VA"], 1);
    }

    #[test]
    fn odd_binaries_are_errors_not_panics() {
        assert!(discover_symbols_in("x", b"not an elf").is_err());
        assert!(discover_symbols(Path::new("/nonexistent/qemu")).is_err());
    }

    fn syms(names: &[&str], stripped: bool) -> BinarySymbols {
        BinarySymbols {
            path: "qemu".into(),
            found: names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        SymbolInfo {
                            address: 0x1000,
                            size: 8,
                            table: if stripped { "dynsym" } else { "symtab" }.into(),
                        },
                    )
                })
                .collect(),
            stripped,
            ..Default::default()
        }
    }

    #[test]
    fn probe_choice_prefers_device_handlers() {
        let s = syms(
            &[
                "smmu_write_mmio",
                "memory_region_dispatch_write",
                "address_space_rw",
            ],
            false,
        );
        let c = choose_probe_set(&s, false);
        assert_eq!(c.set, ProbeSet::DeviceHandlers);
        assert!(c.probes.iter().any(|p| p.symbol == "address_space_rw"));

        let s = syms(
            &[
                "memory_region_dispatch_write",
                "memory_region_dispatch_read",
                "address_space_rw",
                "qemu_log",
            ],
            true,
        );
        let c = choose_probe_set(&s, true);
        assert_eq!(c.set, ProbeSet::Dispatch);
        assert_eq!(c.probes.len(), 5);
        assert!(c.reasons[0].contains("stripped"));

        assert_eq!(
            choose_probe_set(&syms(&["qemu_log"], true), false).set,
            ProbeSet::QemuLog
        );
        let none = choose_probe_set(&syms(&[], true), false);
        assert_eq!(none.set, ProbeSet::None);
        assert!(none.probes.is_empty());
    }

    #[test]
    fn finds_symbols_in_this_test_binary() {
        // Any ELF works; this one has none of the QEMU symbols, which is a result, not an error.
        let exe = std::env::current_exe().unwrap();
        let s = discover_symbols(&exe).unwrap();
        assert!(s.found.is_empty());
        assert!(s.symtab_count + s.dynsym_count > 0);
    }
}
