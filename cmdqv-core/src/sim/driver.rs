//! A synthetic guest driver that behaves like Linux's arm-smmu-v3 + tegra241-cmdqv drivers in a
//! VM: the same bring-up order (../shared/reference/cmdqv-hw.md §10.2), the same queue choice
//! (guest-owned VINTF: only TLBI_NH_ASID, TLBI_NH_VA and ATC_INV go to VCMDQs, everything else
//! to the trapped SMMU command queue), the same submission (entries, PROD doorbell, CONS poll)
//! and the same error recovery (an illegal command overwritten with CMD_SYNC, GERRORN := GERROR).
//!
//! It talks to hardware only through [`GuestPort`], so it drives the sim VMM and the qtest
//! front end alike.

use std::time::{Duration, Instant};

use crate::{
    command::Command,
    regs::{self, off},
};

/// Which device an MMIO access targets.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dev {
    Cmdqv,
    Smmu,
}

/// What a guest vCPU can do.
pub trait GuestPort: Sync {
    fn read(&self, dev: Dev, off: u64, size: u8) -> u64;
    fn write(&self, dev: Dev, off: u64, size: u8, val: u64);
    /// A plain store of one command into guest RAM (not an MMIO access).
    fn ram_write_cmd(&self, gpa: u64, cmd: [u64; 2]);
    /// Called while polling; a real CPU would WFE or spin.
    fn relax(&self) {
        std::hint::spin_loop();
    }
}

/// Guest RAM layout and queue geometry the driver uses.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub vintf: u32,
    pub lvcmdqs: u32,
    /// Global VCMDQs in the device (PARAM), for the ALLOC_MAP reset loop.
    pub num_vcmdqs: u32,
    pub num_vintfs: u32,
    pub sids_per_vintf: u32,
    pub vcmdq_log2size: u8,
    pub vcmdq_ring_base: u64,
    pub smmu_log2size: u8,
    pub smmu_ring_base: u64,
    /// Linux 6.17+: flush ATC timeouts with CMD_SYNCs on the main queue at every VCMDQ deinit.
    pub flush_timeout_on_deinit: bool,
    /// Give up polling a STATUS bit or CONS after this long.
    pub poll_timeout: Duration,
}

impl DriverConfig {
    pub fn vcmdq_ring(&self, lidx: u32) -> u64 {
        self.vcmdq_ring_base + (lidx as u64) * (16u64 << self.vcmdq_log2size)
    }
}

/// Why the driver gave up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DriverError {
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("queue {queue} stuck: CONS {cons:#x}, PROD {prod:#x}")]
    Stuck { queue: String, cons: u32, prod: u32 },
}

/// A command queue the driver can submit to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The SMMU's own command queue (trapped, emulated by the VMM).
    Main,
    /// LVCMDQ `lidx` of the driver's VINTF.
    Vcmdq(u32),
}

/// What one submission saw.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Submitted {
    pub commands: u32,
    /// Errors recovered while waiting (the ISR path ran).
    pub errors_recovered: u32,
    pub cons_polls: u32,
}

/// Software state of one queue (Linux keeps shadow PROD/CONS).
#[derive(Clone, Debug, Default)]
pub struct QueueShadow {
    pub prod: u32,
    pub log2size: u8,
    pub base: u64,
}

/// Opcodes a guest-owned VCMDQ accepts (Linux `tegra241_guest_vcmdq_supports_cmd`).
pub fn guest_vcmdq_supports(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::TlbiNhAsid { .. } | Command::TlbiNhVa { .. } | Command::AtcInv { .. }
    )
}

fn wrap_mask(log2: u8) -> u32 {
    (2u32 << log2) - 1
}

/// The driver. Each vCPU owns the shadow of its own queue; the struct itself is shared.
pub struct Driver<'g, G: GuestPort> {
    pub g: &'g G,
    pub cfg: DriverConfig,
    /// HYP_OWN as read back after VINTF enable (0 in a guest: the VMM masks it).
    pub hyp_own: bool,
    /// Every command handed to any queue (bring-up flushes included).
    pub submitted: std::sync::atomic::AtomicU64,
}

impl<'g, G: GuestPort> Driver<'g, G> {
    pub fn new(g: &'g G, cfg: DriverConfig) -> Self {
        Self {
            g,
            cfg,
            hyp_own: false,
            submitted: Default::default(),
        }
    }

    fn poll(&self, what: &str, mut f: impl FnMut() -> bool) -> Result<(), DriverError> {
        let deadline = Instant::now() + self.cfg.poll_timeout;
        loop {
            if f() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DriverError::Timeout(what.to_string()));
            }
            self.g.relax();
        }
    }

    fn vintf_reg(&self, r: u64) -> u64 {
        regs::VINTF_BLOCK_BASE + regs::VINTF_BLOCK_STRIDE * self.cfg.vintf as u64 + r
    }

    pub fn lvcmdq_page0(&self, lidx: u32, r: u64) -> u64 {
        regs::VINTF_PAGE0
            + regs::VINTF_APERTURE_STRIDE * self.cfg.vintf as u64
            + regs::VCMDQ_STRIDE * lidx as u64
            + r
    }

    fn lvcmdq_page1(&self, lidx: u32, r: u64) -> u64 {
        regs::VINTF_PAGE1
            + regs::VINTF_APERTURE_STRIDE * self.cfg.vintf as u64
            + regs::VCMDQ_STRIDE * lidx as u64
            + r
    }

    fn global_q(&self, lidx: u32) -> u32 {
        self.cfg.vintf * self.cfg.lvcmdqs + lidx
    }

    // ------------------------------------------------------------------------------------------
    // Bring-up

    /// arm-smmu-v3: program and enable the main command queue.
    pub fn smmu_init(&self, main: &mut QueueShadow) -> Result<(), DriverError> {
        let g = self.g;
        g.write(Dev::Smmu, off_smmu::CR0, 4, 0);
        self.poll("SMMU CR0ACK=0", || {
            g.read(Dev::Smmu, off_smmu::CR0ACK, 4) & CR0_CMDQEN == 0
        })?;
        main.base = self.cfg.smmu_ring_base;
        main.log2size = self.cfg.smmu_log2size;
        main.prod = 0;
        g.write(
            Dev::Smmu,
            off_smmu::CMDQ_BASE,
            8,
            main.base | main.log2size as u64,
        );
        g.write(Dev::Smmu, off_smmu::CMDQ_PROD, 4, 0);
        g.write(Dev::Smmu, off_smmu::CMDQ_CONS, 4, 0);
        g.write(Dev::Smmu, off_smmu::CR0, 4, CR0_CMDQEN);
        self.poll("SMMU CR0ACK.CMDQEN", || {
            g.read(Dev::Smmu, off_smmu::CR0ACK, 4) & CR0_CMDQEN != 0
        })
    }

    /// tegra241_cmdqv_hw_reset + VINTF hw_init, in Linux's order (§10.2).
    pub fn cmdqv_reset(
        &mut self,
        main: &mut QueueShadow,
        shadows: &mut [QueueShadow],
    ) -> Result<(), DriverError> {
        self.cmdqv_toggle_enable()?;
        self.preassign_vcmdqs();
        self.vintf_hw_deinit(main)?;
        self.vintf_hw_init()?;
        for lidx in 0..self.cfg.lvcmdqs {
            self.lvcmdq_hw_init(lidx, main, &mut shadows[lidx as usize])?;
        }
        Ok(())
    }

    /// 1. CMDQV disable + wait, enable + wait, other CONFIG bits preserved.
    fn cmdqv_toggle_enable(&self) -> Result<(), DriverError> {
        let c = self.cmdqv_read(off::CONFIG);
        self.cmdqv_write(off::CONFIG, c & !1);
        self.poll("CMDQV STATUS=0", || self.cmdqv_read(off::STATUS) & 1 == 0)?;
        self.cmdqv_write(off::CONFIG, c | 1);
        self.poll("CMDQV STATUS=1", || self.cmdqv_read(off::STATUS) & 1 == 1)
    }

    /// 2. Pre-assign every global VCMDQ to (VINTF, LVCMDQ) with ALLOC=0 (6.17+).
    fn preassign_vcmdqs(&self) {
        let per = (self.cfg.num_vcmdqs / self.cfg.num_vintfs.max(1)).max(1);
        for q in 0..self.cfg.num_vcmdqs {
            let v = (q / per) as u64;
            let l = (q % per) as u64;
            self.cmdqv_write(off::CMDQ_ALLOC_MAP_0 + 4 * q as u64, (v << 15) | (l << 1));
        }
    }

    /// 3a. VINTF deinit: LVCMDQs descending, then the VINTF, then its SID table.
    fn vintf_hw_deinit(&self, main: &mut QueueShadow) -> Result<(), DriverError> {
        for lidx in (0..self.cfg.lvcmdqs).rev() {
            self.vcmdq_deinit(lidx, main)?;
            self.unmap(lidx);
        }
        self.cmdqv_write(self.vintf_reg(off::vintf::CONFIG), 0);
        self.poll("VINTF ENABLE_OK=0", || {
            self.cmdqv_read(self.vintf_reg(off::vintf::STATUS)) & 1 == 0
        })?;
        for s in 0..self.cfg.sids_per_vintf as u64 {
            self.cmdqv_write(self.vintf_reg(off::vintf::SID_MATCH_0 + 4 * s), 0);
            self.cmdqv_write(self.vintf_reg(off::vintf::SID_REPLACE_0 + 4 * s), 0);
        }
        Ok(())
    }

    /// 3b. HYP_OWN | VMID (0 for VINTF0), then ENABLE; read HYP_OWN back.
    fn vintf_hw_init(&mut self) -> Result<(), DriverError> {
        let cfgv = 1u64 << 17;
        self.cmdqv_write(self.vintf_reg(off::vintf::CONFIG), cfgv);
        self.cmdqv_write(self.vintf_reg(off::vintf::CONFIG), cfgv | 1);
        self.poll("VINTF ENABLE_OK", || {
            self.cmdqv_read(self.vintf_reg(off::vintf::STATUS)) & 1 == 1
        })?;
        self.hyp_own = self.cmdqv_read(self.vintf_reg(off::vintf::CONFIG)) & (1 << 17) != 0;
        Ok(())
    }

    /// 3c. One LVCMDQ, ascending: map, init (deinit first), BASE, enable.
    fn lvcmdq_hw_init(
        &self,
        lidx: u32,
        main: &mut QueueShadow,
        sh: &mut QueueShadow,
    ) -> Result<(), DriverError> {
        let g = self.g;
        let a = off::CMDQ_ALLOC_MAP_0 + 4 * self.global_q(lidx) as u64;
        self.cmdqv_write(a, self.cmdqv_read(a) | 1);
        self.vcmdq_deinit(lidx, main)?;
        sh.base = self.cfg.vcmdq_ring(lidx);
        sh.log2size = self.cfg.vcmdq_log2size;
        sh.prod = 0;
        g.write(
            Dev::Cmdqv,
            self.lvcmdq_page1(lidx, off::page1::BASE_L),
            8,
            sh.base | sh.log2size as u64,
        );
        self.cmdqv_write(self.lvcmdq_page0(lidx, off::page0::CONFIG), 1);
        self.poll("VCMDQ EN_OK", || {
            self.cmdqv_read(self.lvcmdq_page0(lidx, off::page0::STATUS)) & 1 == 1
        })
    }

    /// A 32-bit CMDQV register read (`readl_relaxed`).
    fn cmdqv_read(&self, off: u64) -> u64 {
        self.g.read(Dev::Cmdqv, off, 4)
    }

    /// A 32-bit CMDQV register write (`writel_relaxed`).
    fn cmdqv_write(&self, off: u64, val: u64) {
        self.g.write(Dev::Cmdqv, off, 4, val)
    }

    fn unmap(&self, lidx: u32) {
        let a = off::CMDQ_ALLOC_MAP_0 + 4 * self.global_q(lidx) as u64;
        self.cmdqv_write(a, self.cmdqv_read(a) & !1);
    }

    /// tegra241_vcmdq_hw_deinit.
    fn vcmdq_deinit(&self, lidx: u32, main: &mut QueueShadow) -> Result<(), DriverError> {
        let g = self.g;
        let page0 = |r| self.lvcmdq_page0(lidx, r);
        self.cmdqv_write(page0(off::page0::CONFIG), 0);
        self.poll("VCMDQ EN_OK=0", || {
            self.cmdqv_read(page0(off::page0::STATUS)) & 1 == 0
        })?;
        if self.cfg.flush_timeout_on_deinit && main.log2size != 0 {
            // One CS=NONE CMD_SYNC plus the completion CMD_SYNC the submission appends.
            let mut sync_none = Command::sync_none().encode();
            sync_none[0] &= !(0x3fu64 << 22); // only OP and CS set (MSH, MSIATTR cleared)
            self.submit_main(main, &[sync_none, sync_sev()])?;
        }
        self.cmdqv_write(page0(off::page0::PROD_INDX), 0);
        self.cmdqv_write(page0(off::page0::CONS_INDX), 0);
        g.write(
            Dev::Cmdqv,
            self.lvcmdq_page1(lidx, off::page1::BASE_L),
            8,
            0,
        );
        let dram = self.lvcmdq_page1(lidx, off::page1::CONS_INDX_BASE_DRAM_L);
        g.write(Dev::Cmdqv, dram, 8, 0);
        let ge = self.cmdqv_read(page0(off::page0::GERROR));
        let gn = self.cmdqv_read(page0(off::page0::GERRORN));
        if ge != gn {
            self.cmdqv_write(page0(off::page0::GERRORN), ge);
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------------
    // Submission

    /// Submits `cmds` to the SMMU's own queue and waits until consumed.
    pub fn submit_main(
        &self,
        main: &mut QueueShadow,
        cmds: &[[u64; 2]],
    ) -> Result<Submitted, DriverError> {
        self.submit(Target::Main, main, cmds)
    }

    /// Writes `cmds` at PROD (waiting for space), rings the doorbell, and polls CONS until it
    /// reaches PROD, running the error handler when the queue stops.
    pub fn submit(
        &self,
        target: Target,
        q: &mut QueueShadow,
        cmds: &[[u64; 2]],
    ) -> Result<Submitted, DriverError> {
        let g = self.g;
        let mut out = Submitted::default();
        let mask = wrap_mask(q.log2size);
        let size = 1u32 << q.log2size;
        let (prod_off, cons_off, dev) = match target {
            Target::Main => (off_smmu::CMDQ_PROD, off_smmu::CMDQ_CONS, Dev::Smmu),
            Target::Vcmdq(l) => (
                self.lvcmdq_page0(l, off::page0::PROD_INDX),
                self.lvcmdq_page0(l, off::page0::CONS_INDX),
                Dev::Cmdqv,
            ),
        };
        for chunk in cmds.chunks(size.max(1) as usize) {
            // Space: wait until the ring has room for the whole chunk.
            let need = chunk.len() as u32;
            let deadline = Instant::now() + self.cfg.poll_timeout;
            loop {
                let cons = g.read(dev, cons_off, 4) as u32 & mask;
                out.cons_polls += 1;
                let used = q.prod.wrapping_sub(cons) & mask;
                let used = if used > size { size } else { used };
                if size - used >= need {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(DriverError::Stuck {
                        queue: format!("{target:?}"),
                        cons,
                        prod: q.prod,
                    });
                }
                self.handle_error(target, q, &mut out);
                g.relax();
            }
            for c in chunk {
                let idx = q.prod & (size - 1);
                g.ram_write_cmd(q.base + 16 * idx as u64, *c);
                q.prod = (q.prod + 1) & mask;
            }
            g.write(dev, prod_off, 4, q.prod as u64);
            out.commands += need;
            self.submitted
                .fetch_add(need as u64, std::sync::atomic::Ordering::Relaxed);
            // Wait for CONS to reach PROD (Linux polls CONS for VCMDQs).
            let deadline = Instant::now() + self.cfg.poll_timeout;
            loop {
                let cons_raw = g.read(dev, cons_off, 4) as u32;
                out.cons_polls += 1;
                if cons_raw & mask == q.prod {
                    break;
                }
                if (cons_raw >> 24) & 0x7f != 0 || self.error_pending(target) {
                    out.errors_recovered += self.handle_error(target, q, &mut Submitted::default());
                }
                if Instant::now() > deadline {
                    return Err(DriverError::Stuck {
                        queue: format!("{target:?}"),
                        cons: cons_raw,
                        prod: q.prod,
                    });
                }
                g.relax();
            }
        }
        Ok(out)
    }

    fn error_pending(&self, target: Target) -> bool {
        let g = self.g;
        match target {
            Target::Main => {
                (g.read(Dev::Smmu, off_smmu::GERROR, 4) ^ g.read(Dev::Smmu, off_smmu::GERRORN, 4))
                    & 1
                    != 0
            }
            Target::Vcmdq(l) => {
                (g.read(Dev::Cmdqv, self.lvcmdq_page0(l, off::page0::GERROR), 4)
                    ^ g.read(Dev::Cmdqv, self.lvcmdq_page0(l, off::page0::GERRORN), 4))
                    & 1
                    != 0
            }
        }
    }

    /// The error interrupt path: for a VCMDQ, what `tegra241_cmdqv_isr` →
    /// `tegra241_vintf0_handle_error` → `__arm_smmu_cmdq_skip_err` do; for the main queue,
    /// `arm_smmu_gerror_handler`'s CMDQ_ERR branch. Returns how many errors it handled.
    fn handle_error(&self, target: Target, q: &mut QueueShadow, _out: &mut Submitted) -> u32 {
        let g = self.g;
        match target {
            Target::Main => {
                let ge = g.read(Dev::Smmu, off_smmu::GERROR, 4);
                let gn = g.read(Dev::Smmu, off_smmu::GERRORN, 4);
                if (ge ^ gn) & 1 == 0 {
                    return 0;
                }
                self.skip_err(Dev::Smmu, off_smmu::CMDQ_CONS, q);
                g.write(Dev::Smmu, off_smmu::GERRORN, 4, gn ^ 1);
                1
            }
            Target::Vcmdq(_) => {
                let lo = g.read(Dev::Cmdqv, off::VI_ERR_MAP_0, 4);
                let hi = g.read(Dev::Cmdqv, off::VI_ERR_MAP_1, 4);
                let vi_map = lo | hi << 32;
                if vi_map & (1 << self.cfg.vintf) == 0 {
                    return 0;
                }
                let m0 = g.read(Dev::Cmdqv, self.vintf_reg(off::vintf::LVCMDQ_ERR_MAP_0), 8);
                let m1 = g.read(
                    Dev::Cmdqv,
                    self.vintf_reg(off::vintf::LVCMDQ_ERR_MAP_0 + 8),
                    8,
                );
                let mut handled = 0;
                for (word, m) in [m0, m1].into_iter().enumerate() {
                    let mut bits = m;
                    while bits != 0 {
                        let l = bits.trailing_zeros() + 64 * word as u32;
                        bits &= bits - 1;
                        if l >= self.cfg.lvcmdqs {
                            continue; // a stray bit must not make the guest index out of range
                        }
                        let ge = g.read(Dev::Cmdqv, self.lvcmdq_page0(l, off::page0::GERROR), 4);
                        let cons_off = self.lvcmdq_page0(l, off::page0::CONS_INDX);
                        let mut shadow = QueueShadow {
                            prod: 0,
                            log2size: self.cfg.vcmdq_log2size,
                            base: self.cfg.vcmdq_ring(l),
                        };
                        if Target::Vcmdq(l) == target {
                            shadow = q.clone();
                        }
                        self.skip_err(Dev::Cmdqv, cons_off, &mut shadow);
                        g.write(Dev::Cmdqv, self.lvcmdq_page0(l, off::page0::GERRORN), 4, ge);
                        handled += 1;
                    }
                }
                handled
            }
        }
    }

    /// `__arm_smmu_cmdq_skip_err`: CERROR_ILL → overwrite the entry at CONS with a CMD_SYNC
    /// (CS=NONE on a VCMDQ); ABT and ATC_INV_SYNC → retry as is.
    fn skip_err(&self, dev: Dev, cons_off: u64, q: &mut QueueShadow) {
        let cons_raw = self.g.read(dev, cons_off, 4) as u32;
        let cerror = (cons_raw >> 24) & 0x7f;
        if cerror == 1 || cerror > 3 {
            let idx = cons_raw & ((1u32 << q.log2size) - 1);
            let sync = match dev {
                Dev::Cmdqv => Command::sync_none().encode(),
                Dev::Smmu => sync_sev(),
            };
            self.g.ram_write_cmd(q.base + 16 * idx as u64, sync);
        }
    }
}

/// A CMD_SYNC with CS=SEV, as Linux builds it for the main queue without MSIPOLL.
pub fn sync_sev() -> [u64; 2] {
    [0x46 | (2 << 12) | (3 << 22) | (0xf << 24), 0]
}

/// SMMUv3 register offsets the driver uses (page 0), from the one register table.
pub mod off_smmu {
    pub use crate::regs::smmu::{CMDQ_BASE, CMDQ_CONS, CMDQ_PROD, CR0, CR0ACK, GERROR, GERRORN};
}
/// CR0.CMDQEN.
pub const CR0_CMDQEN: u64 = regs::smmu::CR0_CMDQEN as u64;
