//! QEMU's qtest text protocol (a subset) driving the device model, so the tools and tests written
//! against QEMU's `-qtest` can drive the model unchanged.
//!
//! The machine: guest RAM at [`RAM_BASE`] (`ram_size` bytes), the CMDQV MMIO region at
//! `mmio_base` ([`DEFAULT_MMIO_BASE`]), and optionally the SMMU main page at `smmu_base`
//! ([`DEFAULT_SMMU_BASE`], QEMU virt's `VIRT_SMMU`) so the trapped path can be driven too.
//!
//! Commands: `readb/readw/readl/readq ADDR`, `writeb/writew/writel/writeq ADDR VAL`,
//! `read ADDR SIZE`, `write ADDR SIZE 0xHEX`, `b64read ADDR SIZE`, `b64write ADDR SIZE B64`,
//! `memset ADDR SIZE PATTERN`, `endianness`, `irq_intercept_in/out PATH`.
//! Replies follow QEMU's `system/qtest.c`: `OK`, `OK 0x%016x` for readX, `OK 0x<hex bytes>` for
//! `read`, `OK <base64>` for `b64read`, `FAIL Unknown command '<word>'` for a command it does not
//! know. Where QEMU would assert (bad numbers, missing arguments), the model answers
//! `ERR <reason>` and goes on.
//! After `irq_intercept_*`, every interrupt pulse is reported before the reply as
//! `IRQ raise N` / `IRQ lower N` (N: 0 = CMDQV error, the CMDQV's only IRQ; 2 = SMMU CMD_SYNC,
//! 3 = SMMU GERROR, QEMU's `SMMUIrq` sysbus indices).
//!
//! Sub-word MMIO accesses are answered the way QEMU's memory core answers a device that only
//! accepts 4/8 bytes: reads `OK 0x0000000000000000`, writes dropped — and the model counts them.

use std::io::{self, BufRead, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::engine::{CountingSink, IrqLine, ModelEvent, Observer};
use crate::mem::{GuestMemory, VecMemory};
use crate::model::{Cmdqv, ModelConfig, ModelStats, Personality};
use crate::regs::Geometry;
use crate::smmu::{SMMU_MMIO_SIZE, Smmu, SmmuStats};

/// Guest RAM base (QEMU virt).
pub const RAM_BASE: u64 = 0x4000_0000;
/// Default CMDQV MMIO base: a free slot of QEMU virt's low map between `VIRT_SECURE_GPIO`
/// (0x090b_0000) and `VIRT_MMIO` (0x0a00_0000), clear of the SMMU at 0x0905_0000..0x0907_0000
/// and with room for the host geometry's 0x83_0000 bytes.
pub const DEFAULT_MMIO_BASE: u64 = 0x0910_0000;
/// Default SMMU main-page base (QEMU virt `VIRT_SMMU`).
pub const DEFAULT_SMMU_BASE: u64 = 0x0905_0000;
/// Longest accepted line (a b64write of a full 8 MiB ring is ~11 MiB).
pub const MAX_LINE: usize = 64 << 20;
/// Largest guest RAM a qtest machine allocates (a larger `ram_size` is refused by [`serve`]).
pub const MAX_RAM: u64 = 16 << 30;
/// Largest `read`/`write`/`b64*`/`memset` transfer.
pub const MAX_TRANSFER: u64 = 32 << 20;

/// What the qtest machine looks like.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct QtestConfig {
    pub ram_size: u64,
    pub mmio_base: u64,
    pub smmu_base: Option<u64>,
    pub geometry: Geometry,
    pub personality: Personality,
}

impl Default for QtestConfig {
    fn default() -> Self {
        Self {
            ram_size: 256 << 20,
            mmio_base: DEFAULT_MMIO_BASE,
            smmu_base: Some(DEFAULT_SMMU_BASE),
            geometry: Geometry::guest(),
            personality: Personality::Guest,
        }
    }
}

impl QtestConfig {
    /// The model configuration this machine uses: the personality's defaults with this geometry.
    pub fn model_config(&self) -> ModelConfig {
        let base = match self.personality {
            Personality::Guest => ModelConfig::guest(),
            Personality::Host => ModelConfig::host(),
        };
        ModelConfig {
            geometry: self.geometry,
            personality: self.personality,
            ..base
        }
    }
}

/// Counters of one qtest session.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub lines: u64,
    pub ok: u64,
    pub errors: u64,
    /// Accesses that hit no RAM and no device (read 0, write dropped).
    pub unassigned: u64,
    pub irq_reports: u64,
    pub model: ModelStats,
    pub smmu: Option<SmmuStats>,
    pub sink: CountingSink,
}

/// RAM + CMDQV (+ SMMU) on one address map.
#[derive(Debug)]
pub struct Machine {
    pub ram: VecMemory,
    pub cmdqv: Cmdqv,
    pub smmu: Option<Smmu>,
    pub sink: CountingSink,
    pub mmio_base: u64,
    pub smmu_base: u64,
    pub unassigned: u64,
}

enum Region {
    Ram { end: u64 },
    Cmdqv { off: u64, end: u64 },
    Smmu { off: u64, end: u64 },
    None { next: u64 },
}

impl Machine {
    pub fn new(cfg: &QtestConfig) -> Self {
        let ram_size = usize::try_from(cfg.ram_size)
            .unwrap_or(usize::MAX)
            .min(1 << 40);
        Self {
            ram: VecMemory::new(RAM_BASE, ram_size),
            cmdqv: Cmdqv::new(cfg.model_config()),
            smmu: cfg.smmu_base.map(|_| Smmu::new()),
            sink: CountingSink::default(),
            mmio_base: cfg.mmio_base,
            smmu_base: cfg.smmu_base.unwrap_or(0),
            unassigned: 0,
        }
    }

    fn region(&self, a: u64) -> Region {
        let ram_end = RAM_BASE + self.ram.size();
        let cmdqv_end = self.mmio_base.saturating_add(self.cmdqv.mmio_size());
        let smmu_end = self.smmu_base.saturating_add(SMMU_MMIO_SIZE);
        // Devices first: a device placed over RAM shadows it.
        if a >= self.mmio_base && a < cmdqv_end {
            return Region::Cmdqv {
                off: a - self.mmio_base,
                end: cmdqv_end,
            };
        }
        if self.smmu.is_some() && a >= self.smmu_base && a < smmu_end {
            return Region::Smmu {
                off: a - self.smmu_base,
                end: smmu_end,
            };
        }
        if a >= RAM_BASE && a < ram_end {
            let end = [self.mmio_base, self.smmu_base]
                .into_iter()
                .filter(|&s| s > a)
                .fold(ram_end, u64::min);
            return Region::Ram { end };
        }
        let mut next = u64::MAX;
        for s in [
            RAM_BASE,
            self.mmio_base,
            if self.smmu.is_some() {
                self.smmu_base
            } else {
                u64::MAX
            },
        ] {
            if s > a {
                next = next.min(s);
            }
        }
        Region::None { next }
    }

    /// A CPU access of 1, 2, 4 or 8 bytes (little-endian), split the way QEMU's memory core
    /// splits it (see [`Machine::read_bytes`]): an 8-byte access at a 4-aligned device address
    /// is two 4-byte device accesses.
    pub fn read<O: Observer + ?Sized>(&mut self, addr: u64, size: u8, obs: &mut O) -> u64 {
        let mut b = [0u8; 8];
        self.read_bytes(addr, &mut b[..size.min(8) as usize], obs);
        u64::from_le_bytes(b)
    }

    /// A CPU write of 1, 2, 4 or 8 bytes (little-endian), split like [`Machine::read`].
    pub fn write<O: Observer + ?Sized>(&mut self, addr: u64, size: u8, value: u64, obs: &mut O) {
        let b = value.to_le_bytes();
        self.write_bytes(addr, &b[..size.min(8) as usize], obs);
    }

    /// The piece of an access of `rem` bytes at `a` that one region answers: a RAM run, one
    /// device access (cut as QEMU's `memory_access_size` cuts it), or a hole up to the next
    /// region. Never empty, so a loop over pieces ends.
    fn piece_at(&self, a: u64, rem: u64) -> (Region, usize) {
        let r = self.region(a);
        let len = match r {
            Region::Ram { end } => rem.min(end - a),
            Region::Cmdqv { end, .. } | Region::Smmu { end, .. } => {
                piece(a, rem.min(end - a)) as u64
            }
            Region::None { next } => rem.min(next.wrapping_sub(a).max(1)),
        };
        (r, len as usize)
    }

    /// Bulk read: RAM copied directly, devices accessed in pieces as QEMU's
    /// `memory_access_size` cuts them (at most 8 bytes, bounded by the address's alignment,
    /// rounded down to a power of two; a 1- or 2-byte piece is a bad size the device counts and
    /// reads as 0), holes read 0.
    pub fn read_bytes<O: Observer + ?Sized>(&mut self, addr: u64, buf: &mut [u8], obs: &mut O) {
        let mut i = 0usize;
        // Each piece is at least one byte: bounded by buf.len().
        while i < buf.len() {
            let a = addr.wrapping_add(i as u64);
            let (region, n) = self.piece_at(a, (buf.len() - i) as u64);
            let chunk = &mut buf[i..i + n];
            match region {
                Region::Ram { .. } => {
                    let _ = self.ram.read(a, chunk);
                }
                Region::Cmdqv { off, .. } => {
                    let v = self.cmdqv.read(off, n as u8, obs);
                    chunk.copy_from_slice(&v.to_le_bytes()[..n]);
                }
                Region::Smmu { off, .. } => {
                    let v = self.smmu.as_mut().map_or(0, |s| s.read(off, n as u8, obs));
                    chunk.copy_from_slice(&v.to_le_bytes()[..n]);
                }
                Region::None { .. } => {
                    self.unassigned += 1;
                    chunk.fill(0);
                }
            }
            i += n;
        }
    }

    /// Bulk write, split like [`Machine::read_bytes`]; writes to holes are dropped.
    pub fn write_bytes<O: Observer + ?Sized>(&mut self, addr: u64, buf: &[u8], obs: &mut O) {
        let mut i = 0usize;
        while i < buf.len() {
            let a = addr.wrapping_add(i as u64);
            let (region, n) = self.piece_at(a, (buf.len() - i) as u64);
            let chunk = &buf[i..i + n];
            match region {
                Region::Ram { .. } => {
                    let _ = self.ram.write(a, chunk);
                }
                Region::Cmdqv { off, .. } => {
                    let v = le_value(chunk);
                    self.cmdqv
                        .write(off, n as u8, v, &self.ram, &mut self.sink, obs);
                }
                Region::Smmu { off, .. } => {
                    if let Some(s) = self.smmu.as_mut() {
                        s.write(
                            off,
                            n as u8,
                            le_value(chunk),
                            &self.ram,
                            &mut self.sink,
                            obs,
                        );
                    }
                }
                Region::None { .. } => self.unassigned += 1,
            }
            i += n;
        }
    }
}

/// QEMU's `memory_access_size` for a device that accepts up to 8 bytes: the largest power of two
/// that is at most `rem`, at most 8 and no larger than the alignment of `a`.
fn piece(a: u64, rem: u64) -> u8 {
    let mut l = rem.min(8);
    let align = a & a.wrapping_neg();
    if align != 0 && align < l {
        l = align;
    }
    // pow2floor; l is 1..=8 here (rem >= 1)
    (1u64 << (63 - l.max(1).leading_zeros())) as u8
}

fn le_value(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(v)
}

/// Parse like `qemu_strtou64(.., base 0)` (strtoull): an optional `+`/`-` sign, then `0x` hex,
/// leading `0` octal, else decimal; a minus sign negates the value in u64 (so `-1` is
/// `0xffffffffffffffff`).
fn parse_u64(s: &str) -> Option<u64> {
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    // from_str_radix would accept a second sign; strtoull does not.
    if s.starts_with(['+', '-']) {
        return None;
    }
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.starts_with(['+', '-']) {
            return None;
        }
        u64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

/// GLib's `g_base64_decode_inplace`, which QEMU's `b64write` uses: characters outside the
/// alphabet are skipped, `=` counts as a zero digit that trims the group's output, and a trailing
/// partial group of fewer than 4 digits yields nothing. Never an error.
fn glib_base64_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut v, mut i, mut last) = (0u32, 0, [0u8; 2]);
    for &c in s {
        let rank = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => 0,
            _ => continue,
        };
        last = [c, last[0]];
        v = v << 6 | rank as u32;
        i += 1;
        if i == 4 {
            out.push((v >> 16) as u8);
            if last[1] != b'=' {
                out.push((v >> 8) as u8);
            }
            if last[0] != b'=' {
                out.push(v as u8);
            }
            i = 0;
        }
    }
    out
}

/// QEMU's `hex2nib`: the digit's value, or -1 for a character that is not a hex digit.
fn hex2nib(c: u8) -> i32 {
    (c as char).to_digit(16).map_or(-1, |d| d as i32)
}

/// An observer that remembers interrupt pulses for `IRQ raise/lower` reports and forwards
/// everything to the caller's observer.
struct Tap<'a, O: ?Sized> {
    inner: &'a mut O,
    irqs: &'a mut Vec<IrqLine>,
    intercept: bool,
}

impl<O: Observer + ?Sized> Observer for Tap<'_, O> {
    #[inline(always)]
    fn event(&mut self, ev: ModelEvent) {
        if let ModelEvent::Irq { line } = ev
            && self.intercept
            && self.irqs.len() < 1024
        {
            self.irqs.push(line);
        }
        self.inner.event(ev);
    }
}

/// One qtest session over a machine; feed it lines with [`QtestServer::handle_line`].
pub struct QtestServer<O = ()> {
    pub machine: Machine,
    pub obs: O,
    pub stats: Stats,
    intercept: bool,
    irqs: Vec<IrqLine>,
}

impl QtestServer<()> {
    pub fn new(cfg: &QtestConfig) -> Self {
        Self::with_observer(cfg, ())
    }
}

impl<O: Observer> QtestServer<O> {
    pub fn with_observer(cfg: &QtestConfig, obs: O) -> Self {
        Self {
            machine: Machine::new(cfg),
            obs,
            stats: Stats::default(),
            intercept: false,
            irqs: Vec::new(),
        }
    }

    /// Process one line (without or with its newline) and append the reply to `out`.
    pub fn handle_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        self.stats.lines += 1;
        let reply = match std::str::from_utf8(line) {
            Ok(s) => self.dispatch(s.trim_end_matches(['\n', '\r'])),
            Err(_) => Err("line is not UTF-8".to_string()),
        };
        for line in self.irqs.drain(..) {
            let n = match line {
                IrqLine::CmdqvError => 0,
                IrqLine::SmmuGerror => 3,
                IrqLine::SmmuCmdSync => 2,
            };
            self.stats.irq_reports += 1;
            let _ = write!(out, "IRQ raise {n}\nIRQ lower {n}\n");
        }
        match reply {
            Ok(r) => {
                self.stats.ok += 1;
                out.extend_from_slice(r.as_bytes());
                out.push(b'\n');
            }
            Err(e) => {
                self.stats.errors += 1;
                if e.starts_with("FAIL ") {
                    let _ = writeln!(out, "{e}");
                } else {
                    let _ = writeln!(out, "ERR {e}");
                }
            }
        }
    }

    /// Counters with the model's, the SMMU's and the sink's folded in.
    pub fn snapshot(&self) -> Stats {
        Stats {
            unassigned: self.machine.unassigned,
            model: self.machine.cmdqv.stats.clone(),
            smmu: self.machine.smmu.as_ref().map(|s| s.stats.clone()),
            sink: self.machine.sink.clone(),
            ..self.stats.clone()
        }
    }

    fn dispatch(&mut self, line: &str) -> Result<String, String> {
        let w: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(&cmd) = w.first() else {
            return Err("empty line".into());
        };
        let args = Args { cmd, w: &w };
        let mut tap = Tap {
            inner: &mut self.obs,
            irqs: &mut self.irqs,
            intercept: self.intercept,
        };
        let m = &mut self.machine;
        match cmd {
            "readb" | "readw" | "readl" | "readq" => {
                let v = m.read(args.num(1)?, access_size(cmd), &mut tap);
                Ok(format!("OK 0x{v:016x}"))
            }
            "writeb" | "writew" | "writel" | "writeq" => write_access(m, &args, &mut tap),
            "read" | "b64read" => read_bulk(m, &args, &mut tap),
            "write" => write_hex(m, &args, &mut tap),
            "b64write" => write_b64(m, &args, &mut tap),
            "memset" => {
                let (a, n, p) = (args.num(1)?, args.size(2)?, args.num(3)?);
                m.write_bytes(a, &vec![p as u8; n as usize], &mut tap);
                Ok("OK".into())
            }
            "endianness" => Ok("OK little".into()),
            "irq_intercept_in" | "irq_intercept_out" => {
                if w.len() < 2 {
                    return Err(format!("{cmd}: missing device path"));
                }
                self.intercept = true;
                Ok("OK".into())
            }
            // QEMU's own wording (system/qtest.c), so a libqtest client sees the same line.
            other => Err(format!("FAIL Unknown command '{other}'")),
        }
    }
}

/// The words of one qtest line, numbers parsed as QEMU parses them.
struct Args<'a> {
    cmd: &'a str,
    w: &'a [&'a str],
}

impl Args<'_> {
    fn num(&self, i: usize) -> Result<u64, String> {
        let cmd = self.cmd;
        let s = self
            .w
            .get(i)
            .ok_or_else(|| format!("{cmd}: missing argument {i}"))?;
        parse_u64(s).ok_or_else(|| format!("{cmd}: invalid number '{s}'"))
    }
    /// A transfer size, bounded by [`MAX_TRANSFER`].
    fn size(&self, i: usize) -> Result<u64, String> {
        let n = self.num(i)?;
        if n > MAX_TRANSFER {
            return Err(format!("{}: size {n} exceeds {MAX_TRANSFER}", self.cmd));
        }
        Ok(n)
    }
    /// The data word of `write` / `b64write` (QEMU asserts it has at least 3 characters).
    fn data(&self, i: usize) -> Result<&[u8], String> {
        let data = self
            .w
            .get(i)
            .ok_or_else(|| format!("{}: missing data", self.cmd))?;
        if data.len() < 3 {
            return Err("invalid argument size".into());
        }
        Ok(data.as_bytes())
    }
}

/// `writeb/writew/writel/writeq ADDR VALUE`: the value truncated to the access size.
fn write_access<O: Observer + ?Sized>(
    m: &mut Machine,
    args: &Args<'_>,
    obs: &mut O,
) -> Result<String, String> {
    let size = access_size(args.cmd);
    let (a, v) = (args.num(1)?, args.num(2)?);
    let v = if size == 8 {
        v
    } else {
        v & ((1u64 << (8 * size)) - 1)
    };
    m.write(a, size, v, obs);
    Ok("OK".into())
}

/// `read ADDR SIZE` (hex bytes) and `b64read ADDR SIZE` (base64).
fn read_bulk<O: Observer + ?Sized>(
    m: &mut Machine,
    args: &Args<'_>,
    obs: &mut O,
) -> Result<String, String> {
    let (a, n) = (args.num(1)?, args.size(2)?);
    if n == 0 && args.cmd == "read" {
        return Err("read: size must be non-zero".into());
    }
    let mut buf = vec![0u8; n as usize];
    m.read_bytes(a, &mut buf, obs);
    if args.cmd != "read" {
        return Ok(format!("OK {}", B64.encode(&buf)));
    }
    let mut reply = String::with_capacity(5 + 2 * buf.len());
    reply.push_str("OK 0x");
    for b in &buf {
        use std::fmt::Write as _;
        let _ = write!(reply, "{b:02x}");
    }
    Ok(reply)
}

/// `write ADDR SIZE 0xHEX`: QEMU skips the two-character 0x prefix and zero-fills missing bytes;
/// it checks no digit, so a non-hex digit is -1 and `0xzz` writes 0xff.
fn write_hex<O: Observer + ?Sized>(
    m: &mut Machine,
    args: &Args<'_>,
    obs: &mut O,
) -> Result<String, String> {
    let (a, n) = (args.num(1)?, args.size(2)?);
    let data = args.data(3)?;
    let mut buf = vec![0u8; n as usize];
    for (i, b) in buf.iter_mut().enumerate() {
        if i * 2 + 4 <= data.len() {
            let hi = hex2nib(data[i * 2 + 2]);
            let lo = hex2nib(data[i * 2 + 3]);
            *b = ((hi << 4) as u8) | lo as u8;
        }
    }
    m.write_bytes(a, &buf, obs);
    Ok("OK".into())
}

/// `b64write ADDR SIZE B64`: QEMU logs a length mismatch and writes SIZE bytes; missing bytes
/// are zero here.
fn write_b64<O: Observer + ?Sized>(
    m: &mut Machine,
    args: &Args<'_>,
    obs: &mut O,
) -> Result<String, String> {
    let (a, n) = (args.num(1)?, args.size(2)?);
    let mut buf = glib_base64_decode(args.data(3)?);
    buf.resize(n as usize, 0);
    m.write_bytes(a, &buf, obs);
    Ok("OK".into())
}

fn access_size(cmd: &str) -> u8 {
    match cmd.as_bytes()[cmd.len() - 1] {
        b'b' => 1,
        b'w' => 2,
        b'l' => 4,
        _ => 8,
    }
}

/// Read one line of at most `max` bytes (newline included). A longer line is skipped up to and
/// including its newline and reported as `Err(())`; `Ok(false)` is end of input.
fn read_line_bounded<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Result<bool, ()>> {
    buf.clear();
    let n = io::Read::take(&mut *r, max as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Ok(false));
    }
    if buf.len() > max && buf.last() != Some(&b'\n') {
        buf.clear();
        loop {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                break;
            }
            if let Some(p) = avail.iter().position(|&b| b == b'\n') {
                r.consume(p + 1);
                break;
            }
            let l = avail.len();
            r.consume(l);
        }
        return Ok(Err(()));
    }
    Ok(Ok(true))
}

/// Serve qtest lines from `reader` until end of input, replying on `writer` (flushed after every
/// reply, as a qtest client waits for each). Returns the session's counters.
pub fn serve<R: BufRead, W: Write>(cfg: QtestConfig, reader: R, writer: W) -> io::Result<Stats> {
    serve_with_observer(cfg, (), reader, writer)
}

/// [`serve`] with an observer receiving every model event.
pub fn serve_with_observer<O: Observer, R: BufRead, W: Write>(
    cfg: QtestConfig,
    obs: O,
    mut reader: R,
    mut writer: W,
) -> io::Result<Stats> {
    if cfg.ram_size > MAX_RAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "ram_size {:#x} exceeds the qtest machine's limit {MAX_RAM:#x}",
                cfg.ram_size
            ),
        ));
    }
    let mut server = QtestServer::with_observer(&cfg, obs);
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        out.clear();
        match read_line_bounded(&mut reader, &mut line, MAX_LINE)? {
            Ok(false) => break,
            Ok(true) => server.handle_line(&line, &mut out),
            Err(()) => {
                server.stats.lines += 1;
                server.stats.errors += 1;
                out.extend_from_slice(b"ERR line too long\n");
            }
        }
        writer.write_all(&out)?;
        writer.flush()?;
    }
    Ok(server.snapshot())
}

/// Connect to the unix socket at `path` and serve it, as `qemu -qtest unix:PATH` does (libqtest
/// listens, QEMU connects).
pub fn serve_unix(cfg: QtestConfig, path: &std::path::Path) -> io::Result<Stats> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    serve(cfg, io::BufReader::new(s.try_clone()?), s)
}

/// Listen on `path`, accept one client and serve it.
pub fn serve_unix_listen(cfg: QtestConfig, path: &std::path::Path) -> io::Result<Stats> {
    let l = std::os::unix::net::UnixListener::bind(path)?;
    let (s, _) = l.accept()?;
    serve(cfg, io::BufReader::new(s.try_clone()?), s)
}

/// One fuzzing run of the qtest parser (the `cargo fuzz` target `qtest`): every line of `data`
/// through a small machine. Returns the number of replies. Panics only on a broken invariant
/// (one reply line per input line, IRQ reports aside).
pub fn fuzz_lines(data: &[u8]) -> usize {
    let cfg = QtestConfig {
        ram_size: 1 << 16,
        ..Default::default()
    };
    let mut s = QtestServer::new(&cfg);
    let mut out = Vec::new();
    let mut n = 0;
    for line in data.split(|&b| b == b'\n').take(256) {
        out.clear();
        s.handle_line(line, &mut out);
        let replies = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty() && !l.starts_with(b"IRQ "))
            .count();
        assert_eq!(
            replies,
            1,
            "{:?} -> {:?}",
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(&out)
        );
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line's reply (IRQ reports included), trailing newline trimmed.
    fn reply(q: &mut QtestServer, line: &str) -> String {
        let mut out = Vec::new();
        q.handle_line(line.as_bytes(), &mut out);
        String::from_utf8(out).unwrap().trim_end().to_string()
    }

    fn run(input: &str) -> (String, Stats) {
        run_cfg(QtestConfig::default(), input)
    }

    fn run_cfg(cfg: QtestConfig, input: &str) -> (String, Stats) {
        let mut out = Vec::new();
        let st = serve(cfg, input.as_bytes(), &mut out).unwrap();
        (String::from_utf8(out).unwrap(), st)
    }

    #[test]
    fn ram_round_trip_matches_qemu_formatting() {
        let (out, st) = run("readl 0x40000000\nwritel 0x40000000 0x12345678\nreadl 0x40000000\n");
        assert_eq!(out, "OK 0x0000000000000000\nOK\nOK 0x0000000012345678\n");
        assert_eq!(st.ok, 3);
        let (out, _) = run(
            "writeq 0x40000008 0x1122334455667788\nreadb 0x40000008\nreadw 0x4000000e\nread 0x40000008 4\nb64read 0x40000008 3\n",
        );
        assert_eq!(
            out,
            "OK\nOK 0x0000000000000088\nOK 0x0000000000001122\nOK 0x88776655\nOK iHdm\n"
        );
    }

    #[test]
    fn write_and_b64write_fill_ram() {
        let (out, _) = run(
            "write 0x40000000 4 0xdeadbeef\nreadl 0x40000000\nb64write 0x40000010 3 AQID\nread 0x40000010 4\nwrite 0x40000020 4 0x01\nread 0x40000020 4\nmemset 0x40000030 2 0xab\nreadw 0x40000030\n",
        );
        assert_eq!(
            out,
            "OK\nOK 0x00000000efbeadde\nOK\nOK 0x01020300\nOK\nOK 0x01000000\nOK\nOK 0x000000000000abab\n"
        );
    }

    #[test]
    fn cmdqv_registers_answer_at_the_mmio_base() {
        let b = DEFAULT_MMIO_BASE;
        let input = format!(
            "readl {:#x}\nreadl {:#x}\nreadb {:#x}\nreadq {:#x}\nendianness\n",
            b,
            b + 4,
            b,
            b
        );
        let (out, st) = run(&input);
        assert_eq!(
            out,
            "OK 0x0000000000020083\nOK 0x0000000000004011\nOK 0x0000000000000000\nOK 0x0000401100020083\nOK little\n"
        );
        assert_eq!(
            st.model.guest_errors[crate::engine::GuestErrorKind::BadAccessSize as usize],
            1
        );
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        let (out, st) = run(
            "bogus 1\n\nreadl\nreadl zz\nwrite 0x40000000 4 0\nwrite 0x40000000 4 0xzz\nb64write 0x40000000 4 !!!!\nread 0x40000000 0\nread 0 99999999999\nwritel 0x0 1\nreadl 0xffffffffffffffff\n\u{1}\n",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 12, "{out}");
        assert_eq!(lines[0], "FAIL Unknown command 'bogus'");
        // line 5 (`write .. 0xzz`) is OK: QEMU writes hex2nib's -1 nibbles, it does not refuse
        // lines 5 and 6 are OK: QEMU writes hex2nib's -1 nibbles and GLib's base64 decoder
        // skips characters outside the alphabet; neither refuses.
        assert_eq!(lines[5], "OK");
        assert_eq!(lines[6], "OK");
        assert!(
            lines[1..9]
                .iter()
                .enumerate()
                .all(|(i, l)| i == 4 || i == 5 || l.starts_with("ERR ")),
            "{out}"
        );
        assert_eq!(lines[9], "OK");
        assert_eq!(lines[10], "OK 0x0000000000000000");
        assert_eq!(lines[11], "FAIL Unknown command '\u{1}'");
        assert_eq!(st.errors, 8);
        assert!(st.unassigned >= 2);
    }

    #[test]
    fn fuzz_entry_point_answers_every_line_once() {
        let b = DEFAULT_MMIO_BASE;
        let script = format!(
            "readl {b:#x}\nwritel {:#x} 1\nwriteq {:#x} 0x40000004\nread 0x3ffffff0 64\nb64read 0x4000fff0 32\nwrite 0 0\nwritew {:#x} 5\n\u{0}\u{ff}\n",
            b + 0x1000,
            b + 0x40000,
            b + 0x30004
        );
        assert_eq!(fuzz_lines(script.as_bytes()), 9);
        assert_eq!(fuzz_lines(&[0xff, 0xfe, b'\n', b'r']), 2);
    }

    #[test]
    fn overlong_lines_are_skipped() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nendianness\n");
        let mut out = Vec::new();
        serve(QtestConfig::default(), &input[..], &mut out).unwrap();
        assert_eq!(out, b"ERR line too long\nOK little\n");
    }

    #[test]
    fn intercepted_interrupts_are_reported_before_the_reply() {
        let b = DEFAULT_MMIO_BASE;
        // enable VINTF0, map VCMDQ0, ring at RAM with an illegal command, enable, doorbell
        let input = format!(
            "irq_intercept_in /machine/cmdqv\nwritel {:#x} 1\nwritel {:#x} 1\nwriteq {:#x} 0x40000004\nwritel {:#x} 1\nwrite 0x40000000 16 0x07\nwritel {:#x} 1\nreadl {:#x}\n",
            b + 0x1000,
            b + 0x200,
            b + 0x40000,
            b + 0x30008,
            b + 0x30004,
            b + 0x30000,
        );
        let (out, st) = run(&input);
        assert_eq!(
            out,
            "OK\nOK\nOK\nOK\nOK\nOK\nIRQ raise 0\nIRQ lower 0\nOK\nOK 0x0000000001000000\n"
        );
        assert_eq!(st.irq_reports, 1);
    }

    #[test]
    fn unknown_commands_fail_like_qemu() {
        // system/qtest.c: qtest_sendf(chr, "FAIL Unknown command '%s'\n", words[0]);
        let (out, st) = run("bogus 1 2\nendianness\n");
        assert_eq!(out, "FAIL Unknown command 'bogus'\nOK little\n");
        assert_eq!(st.errors, 1);
    }

    #[test]
    fn device_accesses_split_like_qemus_memory_core() {
        // QEMU's memory_access_size bounds an access by the address's alignment: an 8-byte
        // access at a 4-aligned (not 8-aligned) MMIO address becomes two 4-byte accesses.
        let s = DEFAULT_SMMU_BASE;
        let b = DEFAULT_MMIO_BASE;
        let input = format!(
            "writel {:#x} 0x1234\nwritel {:#x} 5\nreadq {:#x}\nwriteq {:#x} 0x0000000700004321\nreadl {:#x}\nreadl {:#x}\nwriteq {:#x} 0x0000000200000001\nreadl {:#x}\nreadl {:#x}\nread {:#x} 8\n",
            s + 0x94,
            s + 0x98,
            s + 0x94,
            s + 0x94,
            s + 0x94,
            s + 0x98,
            b + 0x1c,
            b + 0x1c,
            b + 0x20,
            b + 0x1c,
        );
        let (out, _) = run(&input);
        assert_eq!(
            out,
            "OK\nOK\nOK 0x0000000500001234\nOK\nOK 0x0000000000004321\nOK 0x0000000000000007\nOK\nOK 0x0000000000000001\nOK 0x0000000000000002\nOK 0x0100000002000000\n"
        );
    }

    #[test]
    fn linux_smmu_bring_up_through_qtest() {
        // arm_smmu_device_hw_probe + arm_smmu_device_reset, as qtest lines against the SMMU page.
        let s = DEFAULT_SMMU_BASE;
        let mut q = QtestServer::new(&QtestConfig::default());
        let mut cmd = |line: String| reply(&mut q, &line);
        let rd = |r: String| u64::from_str_radix(r.strip_prefix("OK 0x").unwrap(), 16).unwrap();
        let idr0 = rd(cmd(format!("readl {:#x}", s)));
        assert_eq!(idr0 >> 21 & 3, 2, "TTENDIAN little");
        assert_eq!(idr0 >> 2 & 3, 2, "TTF AArch64");
        assert_ne!(idr0 & 3, 0, "S1P or S2P");
        let idr1 = rd(cmd(format!("readl {:#x}", s + 4)));
        assert_eq!(idr1 & 0x7 << 28, 0, "no TABLES/QUEUES_PRESET, REL");
        assert!((idr1 >> 21 & 0x1f) > 6, "CMDQS > log2(CMDQ_BATCH_ENTRIES)");
        let idr5 = rd(cmd(format!("readl {:#x}", s + 0x14)));
        assert_ne!(idr5 & 0x50, 0, "a granule the kernel can use");
        // disable, program tables and queues
        assert_eq!(cmd(format!("writel {:#x} 0", s + 0x20)), "OK");
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0x24))), 0);
        let ring = 0x4000_1000u64;
        cmd(format!(
            "writeq {:#x} {:#x}",
            s + 0x80,
            0x4000_8000u64 | 1 << 62
        ));
        cmd(format!("writel {:#x} 0x8", s + 0x88));
        cmd(format!("writeq {:#x} {:#x}", s + 0x90, ring | 1 << 62 | 8));
        assert_eq!(
            rd(cmd(format!("readq {:#x}", s + 0x90))),
            ring | 1 << 62 | 8
        );
        cmd(format!("writel {:#x} 0", s + 0x98));
        cmd(format!("writel {:#x} 0", s + 0x9c));
        cmd(format!("writel {:#x} 0x8", s + 0x20));
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0x24))), 0x8);
        // CFGI_ALL + CMD_SYNC(CS=SEV), TLBI_NSNH_ALL + CMD_SYNC: CONS must reach PROD
        let cmds = [
            (0x04u64, 31u64),
            (0x46 | 2 << 12, 0),
            (0x30, 0),
            (0x46 | 2 << 12, 0),
        ];
        for (i, (w0, w1)) in cmds.iter().enumerate() {
            let a = ring + 16 * i as u64;
            cmd(format!("writeq {a:#x} {w0:#x}"));
            cmd(format!("writeq {:#x} {w1:#x}", a + 8));
        }
        cmd(format!("writel {:#x} 2", s + 0x98));
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0x9c))), 2);
        cmd(format!("writel {:#x} 4", s + 0x98));
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0x9c))), 4);
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0x60))), 0, "no GERROR");
        // event queue: base by writeq, PROD/CONS through page1
        cmd(format!(
            "writeq {:#x} {:#x}",
            s + 0xa0,
            0x4000_4000u64 | 1 << 62 | 7
        ));
        cmd(format!("writel {:#x} 0", s + 0x100a8));
        cmd(format!("writel {:#x} 0x3", s + 0x100ac));
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0xac))), 3);
        cmd(format!("writel {:#x} 0xc", s + 0x20));
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0x24))), 0xc);
        // IRQs, then SMMUEN
        cmd(format!("writel {:#x} 0x5", s + 0x50));
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0x54))), 0x5);
        cmd(format!("writel {:#x} 0xd", s + 0x20));
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0x24))), 0xd);
        // arm_smmu_update_gbpa: UPDATE reads back clear
        cmd(format!(
            "writel {:#x} {:#x}",
            s + 0x44,
            1u64 << 31 | 1 << 20
        ));
        assert_eq!(rd(cmd(format!("readl {:#x}", s + 0x44))), 1 << 20);
    }

    #[test]
    fn linux_cmdqv_reset_sequence_through_qtest() {
        // tegra241_cmdqv_hw_reset (§10.2) on QEMU's guest geometry: 1 VINTF, 2 VCMDQs.
        let b = DEFAULT_MMIO_BASE;
        let mut q = QtestServer::new(&QtestConfig::default());
        let mut cmd = |line: String| reply(&mut q, &line);
        let rd = |r: String| u64::from_str_radix(r.strip_prefix("OK 0x").unwrap(), 16).unwrap();
        assert_eq!(rd(cmd(format!("readl {:#x}", b + 4))), 0x4011);
        let config = rd(cmd(format!("readl {b:#x}")));
        assert_eq!(config, 0x0002_0083);
        assert_eq!(rd(cmd(format!("readl {:#x}", b + 8))), 1);
        cmd(format!("writel {b:#x} {:#x}", config & !1));
        assert_eq!(rd(cmd(format!("readl {:#x}", b + 8))), 0);
        cmd(format!("writel {b:#x} {config:#x}"));
        assert_eq!(rd(cmd(format!("readl {:#x}", b + 8))), 1);
        // ALLOC=0 for every global queue
        for qi in 0..2u64 {
            cmd(format!("writel {:#x} {:#x}", b + 0x200 + 4 * qi, qi << 1));
        }
        // VINTF0 deinit: LVCMDQs descending, all slots already unmapped: reads 0, writes dropped
        for l in (0..2u64).rev() {
            let p0 = b + 0x30000 + 0x80 * l;
            let p1 = b + 0x40000 + 0x80 * l;
            cmd(format!("writel {:#x} 0", p0 + 8));
            assert_eq!(rd(cmd(format!("readl {:#x}", p0 + 0xc))), 0);
            cmd(format!("writel {:#x} 0", p0 + 4));
            cmd(format!("writel {:#x} 0", p0));
            cmd(format!("writeq {p1:#x} 0"));
            cmd(format!("writeq {:#x} 0", p1 + 8));
            assert_eq!(rd(cmd(format!("readl {:#x}", p0 + 0x10))), 0);
            assert_eq!(rd(cmd(format!("readl {:#x}", p0 + 0x14))), 0);
            cmd(format!("writel {:#x} {:#x}", b + 0x200 + 4 * l, l << 1));
        }
        cmd(format!("writel {:#x} 0", b + 0x1000));
        assert_eq!(rd(cmd(format!("readl {:#x}", b + 0x1004))) & 1, 0);
        // VINTF0 hw_init(hyp_own = true): HYP_OWN is stripped in a guest
        cmd(format!("writel {:#x} {:#x}", b + 0x1000, 1u64 << 17));
        cmd(format!("writel {:#x} {:#x}", b + 0x1000, 1u64 << 17 | 1));
        assert_eq!(rd(cmd(format!("readl {:#x}", b + 0x1004))) & 1, 1);
        assert_eq!(rd(cmd(format!("readl {:#x}", b + 0x1000))), 1);
        // LVCMDQs ascending: map, base, enable
        for l in 0..2u64 {
            let p0 = b + 0x30000 + 0x80 * l;
            let p1 = b + 0x40000 + 0x80 * l;
            cmd(format!("writel {:#x} {:#x}", b + 0x200 + 4 * l, l << 1 | 1));
            let base = 0x4001_0000 + 0x1000 * l;
            cmd(format!("writeq {p1:#x} {:#x}", base | 8));
            assert_eq!(rd(cmd(format!("readq {p1:#x}"))), base | 8);
            cmd(format!("writel {:#x} 1", p0 + 8));
            assert_eq!(rd(cmd(format!("readl {:#x}", p0 + 0xc))), 1);
        }
        assert_eq!(rd(cmd(format!("readq {:#x}", b + 0x10c0))), 0);
        // a guest batch: TLBI_NH_ASID + CMD_SYNC(CS=NONE) on LVCMDQ0
        let ring = 0x4001_0000u64;
        cmd(format!("writeq {ring:#x} {:#x}", 0x11u64 | 5 << 48));
        cmd(format!("writeq {:#x} 0x46", ring + 16));
        cmd(format!("writel {:#x} 2", b + 0x30004));
        assert_eq!(rd(cmd(format!("readl {:#x}", b + 0x30000))), 2);
        assert_eq!(rd(cmd(format!("readl {:#x}", b + 0x14))), 0);
    }

    #[test]
    fn smmu_irq_numbers_are_qemus_sysbus_indices() {
        // hw/arm/smmuv3.h: SMMU_IRQ_EVTQ 0, SMMU_IRQ_PRIQ 1, SMMU_IRQ_CMD_SYNC 2, SMMU_IRQ_GERROR 3.
        let s = DEFAULT_SMMU_BASE;
        let input = format!(
            "irq_intercept_out /machine/smmuv3 sysbus-irq\nwriteq {:#x} {:#x}\nwritel {:#x} 1\nwritel {:#x} 8\nwrite 0x40000000 16 0x07\nwritel {:#x} 1\n",
            s + 0x90,
            RAM_BASE | 4,
            s + 0x50,
            s + 0x20,
            s + 0x98,
        );
        let (out, _) = run(&input);
        assert_eq!(out, "OK\nOK\nOK\nOK\nOK\nIRQ raise 3\nIRQ lower 3\nOK\n");
    }

    #[test]
    fn numbers_parse_like_qemu_strtou64() {
        assert_eq!(parse_u64("0x10"), Some(16));
        assert_eq!(parse_u64("010"), Some(8));
        assert_eq!(parse_u64("10"), Some(10));
        assert_eq!(parse_u64("+10"), Some(10));
        assert_eq!(parse_u64("-1"), Some(u64::MAX));
        assert_eq!(parse_u64("-0x10"), Some(16u64.wrapping_neg()));
        assert_eq!(parse_u64("0x+5"), None);
        assert_eq!(parse_u64("--1"), None);
        assert_eq!(parse_u64("08"), None);
        let (out, _) = run("writel 0x40000000 -1\nreadq 0x40000000\n");
        assert_eq!(out, "OK\nOK 0x00000000ffffffff\n");
    }

    #[test]
    fn write_with_bad_hex_digits_stores_what_qemu_stores() {
        // system/qtest.c "write": data[i] = hex2nib(hi) << 4 | hex2nib(lo), hex2nib = -1 on a
        // non-hex character, no error.
        let (out, _) = run("write 0x40000000 3 0xzz1zz1\nread 0x40000000 3\n");
        assert_eq!(out, "OK\nOK 0xfffff1\n");
    }

    #[test]
    fn b64write_decodes_leniently_like_glib() {
        // g_base64_decode_inplace skips characters outside the alphabet and never fails.
        let (out, _) = run(
            "b64write 0x40000000 3 AQ!ID\nread 0x40000000 3\nb64write 0x40000010 2 AQI=\nread 0x40000010 2\n",
        );
        assert_eq!(out, "OK\nOK 0x010203\nOK\nOK 0x0102\n");
        assert_eq!(glib_base64_decode(b"AQI"), Vec::<u8>::new());
        assert_eq!(glib_base64_decode(b"AQIDBA=="), vec![1, 2, 3, 4]);
    }

    #[test]
    fn every_cmd_sync_irq_is_reported() {
        // smmuv3_cmdq_consume pulses SMMU_IRQ_CMD_SYNC once per CMD_SYNC with CS=IRQ.
        let s = DEFAULT_SMMU_BASE;
        let input = format!(
            "irq_intercept_out /machine/smmuv3 sysbus-irq\nwriteq {:#x} {:#x}\nwritel {:#x} 8\nwrite 0x40000000 32 0x4610000000000000000000000000000046100000000000000000000000000000\nwritel {:#x} 2\n",
            s + 0x90,
            RAM_BASE | 4,
            s + 0x20,
            s + 0x98,
        );
        let (out, _) = run(&input);
        assert_eq!(
            out,
            "OK\nOK\nOK\nOK\nIRQ raise 2\nIRQ lower 2\nIRQ raise 2\nIRQ lower 2\nOK\n"
        );
    }
}
