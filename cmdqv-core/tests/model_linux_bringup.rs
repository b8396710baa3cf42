//! Replays the Linux tegra241-cmdqv driver's bring-up (reference §10.2), a command batch, an
//! illegal command and Linux's recovery (§10.4) through the qtest text protocol, then replays the
//! recorded transcript through `serve()` as plain text and checks it answers the same.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cmdqv_core::command::{CmdSync, Command, SyncCs};
use cmdqv_core::model::Personality;
use cmdqv_core::qtest::{self, DEFAULT_MMIO_BASE, DEFAULT_SMMU_BASE, QtestConfig, QtestServer};
use cmdqv_core::regs::{Geometry, alloc_map};

const B: u64 = DEFAULT_MMIO_BASE;
const SMMU: u64 = DEFAULT_SMMU_BASE;
const MAIN_RING: u64 = 0x4010_0000; // SMMU main CMDQ, 2^8 entries
const VCMDQ_RING: u64 = 0x4020_0000; // LVCMDQ l ring at + 0x10000·l, 2^8 entries
const LOG2: u64 = 8;

/// One interactive qtest session that records its transcript.
struct Session {
    server: QtestServer,
    transcript: String,
    replies: String,
}

impl Session {
    fn new(cfg: &QtestConfig) -> Self {
        Self {
            server: QtestServer::new(cfg),
            transcript: String::new(),
            replies: String::new(),
        }
    }

    /// Send one line; return its reply lines (IRQ reports included), asserting no ERR.
    fn cmd(&mut self, line: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.server.handle_line(line.as_bytes(), &mut out);
        let out = String::from_utf8(out).unwrap();
        self.transcript.push_str(line);
        self.transcript.push('\n');
        self.replies.push_str(&out);
        assert!(!out.contains("ERR"), "{line} -> {out}");
        out.lines().map(str::to_string).collect()
    }
    fn read(&mut self, kind: &str, a: u64) -> u64 {
        let r = self.cmd(&format!("{kind} {a:#x}"));
        let last = r.last().unwrap();
        u64::from_str_radix(last.strip_prefix("OK 0x").unwrap(), 16).unwrap()
    }
    fn readl(&mut self, a: u64) -> u32 {
        self.read("readl", a) as u32
    }
    fn readq(&mut self, a: u64) -> u64 {
        self.read("readq", a)
    }
    fn writel(&mut self, a: u64, v: u64) -> Vec<String> {
        self.cmd(&format!("writel {a:#x} {v:#x}"))
    }
    fn writeq(&mut self, a: u64, v: u64) {
        self.cmd(&format!("writeq {a:#x} {v:#x}"));
    }
    /// Linux's readl_poll_timeout: bounded, like its 1 s timeout.
    fn poll(&mut self, a: u64, mask: u32, want: u32) {
        for _ in 0..1000 {
            if self.readl(a) & mask == want {
                return;
            }
        }
        panic!("poll {a:#x} & {mask:#x} never became {want:#x}");
    }
    fn put_cmds(&mut self, gpa: u64, cmds: &[Command]) {
        let bytes: Vec<u8> = cmds
            .iter()
            .flat_map(|c| c.encode())
            .flat_map(u64::to_le_bytes)
            .collect();
        self.cmd(&format!(
            "b64write {gpa:#x} {} {}",
            bytes.len(),
            B64.encode(&bytes)
        ));
    }
    fn put_cmd_hex(&mut self, gpa: u64, c: Command) {
        let hex: String = c
            .encode()
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .map(|b| format!("{b:02x}"))
            .collect();
        self.cmd(&format!("write {gpa:#x} 16 0x{hex}"));
    }
}

fn lv_page0(lidx: u64) -> u64 {
    B + 0x30000 + 0x80 * lidx
}
fn lv_page1(lidx: u64) -> u64 {
    B + 0x40000 + 0x80 * lidx
}

/// The completion CMD_SYNC arm_smmu_cmdq_issue_cmdlist appends on the main CMDQ (CS=SEV here:
/// no MSIPOLL modelled).
fn main_sync() -> Command {
    Command::Sync(CmdSync {
        cs: SyncCs::Sev,
        msh: 3,
        msiattr: 0xf,
        msidata: 0,
        msiaddr: 0,
    })
}

/// `tegra241_vcmdq_hw_flush_timeout`: a CS=NONE CMD_SYNC plus the appended completion sync on
/// the main CMDQ, then wait for CONS.
fn flush_timeout(s: &mut Session, main_prod: &mut u64) {
    for c in [Command::sync_none(), main_sync()] {
        s.put_cmds(MAIN_RING + 16 * (*main_prod & 0xff), &[c]);
        *main_prod = (*main_prod + 1) & 0x1ff;
    }
    s.writel(SMMU + 0x98, *main_prod);
    s.poll(SMMU + 0x9c, 0x1ff, *main_prod as u32);
}

/// `tegra241_vcmdq_hw_deinit` through the logical page of LVCMDQ `l`.
fn vcmdq_deinit(s: &mut Session, l: u64, main_prod: &mut u64) {
    s.writel(lv_page0(l) + 0x8, 0);
    s.poll(lv_page0(l) + 0xc, 1, 0);
    flush_timeout(s, main_prod);
    s.writel(lv_page0(l) + 0x4, 0);
    s.writel(lv_page0(l), 0);
    s.writeq(lv_page1(l), 0);
    s.writeq(lv_page1(l) + 0x8, 0);
    let gerror = s.readl(lv_page0(l) + 0x10);
    let gerrorn = s.readl(lv_page0(l) + 0x14);
    if gerror != gerrorn {
        s.writel(lv_page0(l) + 0x14, gerror as u64);
    }
}

/// Brings the device up like Linux; returns the main CMDQ PROD shadow.
fn bring_up(s: &mut Session, g: Geometry, hyp_own_written: bool) -> u64 {
    s.cmd("irq_intercept_in /machine/cmdqv");
    // arm_smmu_device_reset disables the SMMU, then enables the main CMDQ before the impl reset.
    s.writel(SMMU + 0x20, 0);
    s.poll(SMMU + 0x24, 0x8, 0);
    s.writeq(SMMU + 0x90, MAIN_RING | LOG2);
    s.writel(SMMU + 0x98, 0);
    s.writel(SMMU + 0x9c, 0);
    s.writel(SMMU + 0x50, 1);
    s.writel(SMMU + 0x20, 0x8);
    s.poll(SMMU + 0x24, 0x8, 0x8);
    let mut main_prod = 0;

    // 1. CMDQV disable + wait, enable + wait, other CONFIG bits preserved.
    let param = s.readl(B + 0x4);
    assert_eq!(param, g.param());
    let config = s.readl(B) as u64;
    s.writel(B, config & !1);
    s.poll(B + 0x8, 1, 0);
    s.writel(B, config | 1);
    s.poll(B + 0x8, 1, 1);
    assert_eq!(s.readl(B), (config | 1) as u32);

    // 2. ALLOC_MAP for every global queue with ALLOC=0 (6.17+), ascending.
    let per = g.lvcmdqs_per_vintf() as u64;
    for q in 0..g.num_vcmdqs() as u64 {
        s.writel(
            B + 0x200 + 4 * q,
            alloc_map::encode((q / per) as u32, (q % per) as u32, false) as u64,
        );
    }

    // 3a. VINTF0 deinit: LVCMDQs descending (slots already unmapped: reads 0, writes dropped).
    for l in (0..per).rev() {
        vcmdq_deinit(s, l, &mut main_prod);
        let v = s.readl(B + 0x200 + 4 * l) as u64;
        s.writel(B + 0x200 + 4 * l, v & !1);
    }
    s.writel(B + 0x1000, 0);
    s.poll(B + 0x1004, 1, 0);
    for sid in 0..g.num_sids_per_vintf() as u64 {
        s.writel(B + 0x1040 + 4 * sid, 0);
        s.writel(B + 0x1080 + 4 * sid, 0);
    }

    // 3b. VINTF0 init: HYP_OWN (VMID 0), then ENABLE, wait, re-read HYP_OWN.
    let hyp = (hyp_own_written as u64) << 17;
    s.writel(B + 0x1000, hyp);
    s.writel(B + 0x1000, hyp | 1);
    s.poll(B + 0x1004, 1, 1);
    let hyp_own = s.readl(B + 0x1000) >> 17 & 1;

    // 3c. LVCMDQs ascending: map, init (= deinit, BASE as 64 bits, enable + wait).
    for l in 0..per {
        let v = s.readl(B + 0x200 + 4 * l) as u64;
        s.writel(B + 0x200 + 4 * l, v | 1);
        vcmdq_deinit(s, l, &mut main_prod);
        s.writeq(lv_page1(l), (VCMDQ_RING + 0x10000 * l) | LOG2);
        s.writel(lv_page0(l) + 0x8, 1);
        s.poll(lv_page0(l) + 0xc, 1, 1);
    }
    assert_eq!(
        s.readl(B + 0x1004) >> 16 & 0xff,
        per as u32,
        "VI_NUM_LVCMDQ"
    );
    let _ = hyp_own;
    main_prod
}

/// A Linux command batch: 63 TLBI_NH_VA and the CMD_SYNC (CS forced to NONE, MSH/MSIATTR and
/// MSIADDR = own slot left as built).
fn batch(first_index: u64) -> Vec<Command> {
    let mut v: Vec<Command> = (0..63)
        .map(|i| Command::tlbi_nh_va(0, 1, 0x1_0000_0000 + 0x1000 * i, true))
        .collect();
    let slot = VCMDQ_RING + 16 * ((first_index + 63) & 0xff);
    v.push(Command::Sync(CmdSync {
        cs: SyncCs::None,
        msh: 3,
        msiattr: 0xf,
        msidata: 0,
        msiaddr: slot,
    }));
    v
}

fn run(cfg: QtestConfig, hyp_own_written: bool) {
    let mut s = Session::new(&cfg);
    let main_prod = bring_up(&mut s, cfg.geometry, hyp_own_written);
    let hyp_reads = s.readl(B + 0x1000) >> 17 & 1;
    match cfg.personality {
        Personality::Guest => assert_eq!(hyp_reads, 0, "the VMM masks HYP_OWN"),
        Personality::Host => assert_eq!(hyp_reads, hyp_own_written as u32),
    }
    // Two CMD_SYNCs per VCMDQ deinit went to the main CMDQ, all consumed.
    let per = cfg.geometry.lvcmdqs_per_vintf() as u64;
    assert_eq!(main_prod, 2 * 2 * per);
    assert_eq!(s.readl(SMMU + 0x9c) as u64, main_prod);

    // A batch on LVCMDQ0: b64write into guest RAM, PROD doorbell, CONS == PROD after.
    s.put_cmds(VCMDQ_RING, &batch(0));
    s.writel(lv_page0(0) + 0x4, 64);
    assert_eq!(s.readl(lv_page0(0)), 64);
    // the same state through the global aperture (VCMDQ0)
    assert_eq!(s.readl(B + 0x10000), 64);
    assert_eq!(s.readl(lv_page0(0) + 0x10), 0);

    // An illegal command at 64, then a sync: stops on it with CERROR_ILL.
    s.put_cmd_hex(VCMDQ_RING + 16 * 64, Command::decode(0x07, 0));
    s.put_cmd_hex(VCMDQ_RING + 16 * 65, Command::sync_none());
    let r = s.writel(lv_page0(0) + 0x4, 66);
    assert_eq!(
        r,
        ["IRQ raise 0", "IRQ lower 0", "OK"],
        "one edge on the CMDQV line"
    );
    let cons = s.readl(lv_page0(0));
    assert_eq!(cons & 0xfffff, 64);
    assert_eq!(cons >> 24 & 0x7f, 1, "CONS.ERR = CERROR_ILL");
    let gerror = s.readl(lv_page0(0) + 0x10);
    assert_eq!(gerror & 1, 1, "GERROR.CMDQ_ERR toggled");

    // Linux's ISR: VI_ERR_MAP as two 32-bit reads, CMDQ_ERR_MAP words, LVCMDQ_ERR_MAP as readq.
    let vi = s.readl(B + 0x14) as u64 | (s.readl(B + 0x18) as u64) << 32;
    assert_eq!(vi, 1, "VI_ERR_MAP bit 0 (VINTF0)");
    assert_eq!(s.readl(B + 0x24), 1, "CMDQ_ERR_MAP bit 0 (VCMDQ0)");
    for w in 1..4 {
        assert_eq!(s.readl(B + 0x24 + 4 * w), 0);
    }
    assert_eq!(s.readq(B + 0x10c0), 1, "LVCMDQ_ERR_MAP bit 0");
    assert_eq!(s.readq(B + 0x10c8), 0);
    // __arm_smmu_cmdq_skip_err: ILL → overwrite the entry at CONS with CMD_SYNC (CS=NONE).
    let g = s.readl(lv_page0(0) + 0x10);
    s.put_cmd_hex(VCMDQ_RING + 16 * (cons as u64 & 0xff), Command::sync_none());
    s.writel(lv_page0(0) + 0x14, g as u64);
    assert_eq!(
        s.readl(lv_page0(0)) & 0xfffff,
        66,
        "consumption resumed and completed"
    );
    assert_eq!(s.readq(B + 0x10c0), 0, "maps clear on ack (default option)");
    assert_eq!(s.readl(B + 0x14), 0);

    // A second batch wraps nothing yet but runs on LVCMDQ1 as well.
    s.put_cmds(VCMDQ_RING + 0x10000, &batch(0));
    s.writel(lv_page0(1) + 0x4, 64);
    assert_eq!(s.readl(lv_page0(1)), 64);

    let st = s.server.snapshot();
    assert_eq!(st.sink.tlb, 63 * 2);
    assert_eq!(st.model.queue_errors, 1);
    assert_eq!(st.model.irq_pulses, 1);
    assert_eq!(st.errors, 0);
    // Linux's reset unmaps ascending: counted as ordering notes, never refused.
    assert_eq!(
        st.model.guest_errors[cmdqv_core::engine::GuestErrorKind::AllocConflict as usize],
        0
    );

    // The transcript alone, as text through serve(), answers exactly the same.
    let mut out = Vec::new();
    qtest::serve(cfg, s.transcript.as_bytes(), &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), s.replies);
}

#[test]
fn linux_bring_up_batch_error_and_recovery_guest() {
    run(QtestConfig::default(), true);
}

#[test]
fn linux_bring_up_batch_error_and_recovery_host() {
    let cfg = QtestConfig {
        geometry: Geometry::host(),
        personality: Personality::Host,
        ..Default::default()
    };
    run(cfg, true);
}

#[test]
fn a_second_reset_with_queues_mapped_still_boots() {
    // kexec / second SMMU reset: the device is reached with LVCMDQs mapped and enabled.
    let cfg = QtestConfig::default();
    let mut s = Session::new(&cfg);
    bring_up(&mut s, cfg.geometry, true);
    bring_up(&mut s, cfg.geometry, true);
    s.put_cmds(VCMDQ_RING, &batch(0));
    s.writel(lv_page0(0) + 0x4, 64);
    assert_eq!(s.readl(lv_page0(0)), 64);
    let st = s.server.snapshot();
    assert!(st.model.guest_errors[cmdqv_core::engine::GuestErrorKind::AllocOrder as usize] >= 1);
}
