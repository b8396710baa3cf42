//! The command stream a real Linux guest issued into QEMU's SMMUv3 command queue during one boot
//! (made by `cargo xtask guest` + `cmdqv qemu`, committed as test data), replayed through the
//! CMDQV model as the commands of one VCMDQ:
//!
//! - of a hypervisor-owned VINTF (host personality, HYP_OWN=1): every command is accepted,
//!   nothing faults;
//! - of a guest-owned VINTF: only TLBI_NH_ASID, TLBI_NH_VA, ATC_INV and CMD_SYNC are accepted
//!   (reference §8); every other opcode stops the queue with CERROR_ILL and Linux's recovery
//!   (CMD_SYNC over the entry, GERRORN := GERROR) lets it go on.
//!
//! The stream was issued on the main SMMU queue, whose CMD_SYNCs use CS=SEV/IRQ; on a VCMDQ Linux
//! builds them with CS=NONE (`arm_smmu_cmdq_build_sync_cmd`), so the replay does the same.

use cmdqv_core::{
    command::{Command, SyncCs, command_name},
    engine::CountingSink,
    mem::{GuestMemory, VecMemory},
    model::{Cmdqv, ModelConfig},
    qemu::read_command_stream,
    regs::{self, off},
};

const RAM: u64 = 0x4000_0000;
const RING: u64 = RAM + 0x10_0000;
const LOG2: u64 = 12; // 4096 entries: the whole boot fits without wrapping twice

fn fixture() -> Vec<[u64; 2]> {
    let bytes = include_bytes!("data/qemu-guest-commands.bin");
    read_command_stream(bytes)
        .unwrap()
        .into_iter()
        .map(|[w0, w1]| match Command::decode(w0, w1) {
            Command::Sync(mut s) => {
                s.cs = SyncCs::None;
                Command::Sync(s).encode()
            }
            _ => [w0, w1],
        })
        .collect()
}

struct Dev {
    m: Cmdqv,
    mem: VecMemory,
    sink: CountingSink,
}

impl Dev {
    fn w(&mut self, offset: u64, size: u8, v: u64) {
        self.m
            .write(offset, size, v, &self.mem, &mut self.sink, &mut ());
    }
    fn r(&mut self, offset: u64) -> u32 {
        self.m.read(offset, 4, &mut ()) as u32
    }
}

/// VINTF0 with LVCMDQ0 = VCMDQ0 enabled on a 2^LOG2 ring, brought up in Linux's order.
fn bring_up(cfg: ModelConfig, hyp_own: bool) -> Dev {
    let mut d = Dev {
        m: Cmdqv::new(cfg),
        mem: VecMemory::new(RAM, 8 << 20),
        sink: CountingSink::default(),
    };
    d.w(off::CONFIG, 4, 1);
    assert_eq!(d.r(off::STATUS) & 1, 1);
    d.w(off::CMDQ_ALLOC_MAP_0, 4, 1); // VINTF0, LVCMDQ0, ALLOC
    let vcfg = regs::VINTF_BLOCK_BASE + off::vintf::CONFIG;
    d.w(vcfg, 4, (hyp_own as u64) << 17 | 1);
    assert_eq!(d.r(regs::VINTF_BLOCK_BASE + off::vintf::STATUS) & 1, 1);
    assert_eq!(
        d.r(vcfg) >> 17 & 1,
        hyp_own as u32,
        "HYP_OWN as the personality presents it"
    );
    d.w(regs::VINTF_PAGE1 + off::page1::BASE_L, 8, RING | LOG2);
    d.w(regs::VINTF_PAGE0 + off::page0::CONFIG, 4, 1);
    assert_eq!(d.r(regs::VINTF_PAGE0 + off::page0::STATUS) & 1, 1);
    d
}

/// Submits the stream in the guest's own batches (each ends at a CMD_SYNC) and recovers from
/// errors as Linux does. Returns the opcodes that faulted.
fn replay(d: &mut Dev, cmds: &[[u64; 2]]) -> Vec<String> {
    let entries = 1u64 << LOG2;
    let wrap_mask = (entries << 1) - 1;
    let prod_off = regs::VINTF_PAGE0 + off::page0::PROD_INDX;
    let cons_off = regs::VINTF_PAGE0 + off::page0::CONS_INDX;
    let mut prod = 0u64;
    let mut faulted = Vec::new();
    for batch in cmds.split_inclusive(|c| c[0] as u8 == 0x46) {
        for c in batch {
            d.mem
                .write_cmd(RING + 16 * (prod & (entries - 1)), *c)
                .unwrap();
            prod = (prod + 1) & wrap_mask;
        }
        d.w(prod_off, 4, prod);
        let mut guard = 0;
        loop {
            let cons = d.r(cons_off);
            if u64::from(cons) & wrap_mask == prod {
                break;
            }
            let err = cons >> 24 & 0x7f;
            assert_eq!(err, 1, "only CERROR_ILL is expected, CONS={cons:#x}");
            let idx = u64::from(cons) & (entries - 1);
            let bad = d.mem.read_cmd(RING + 16 * idx).unwrap();
            faulted.push(command_name(bad[0]).into_owned());
            // The maps name exactly this queue while the error is pending.
            assert_eq!(d.m.lvcmdq_err_map(0), 1);
            assert_eq!(d.m.vi_err_map(), 1);
            d.mem
                .write_cmd(RING + 16 * idx, Command::sync_none().encode())
                .unwrap();
            let ge = d.r(regs::VINTF_PAGE0 + off::page0::GERROR);
            d.w(regs::VINTF_PAGE0 + off::page0::GERRORN, 4, ge.into());
            guard += 1;
            assert!(guard <= batch.len(), "recovery must make progress");
        }
    }
    faulted
}

#[test]
fn a_real_boots_commands_run_cleanly_on_a_hypervisor_owned_vcmdq() {
    let cmds = fixture();
    assert!(cmds.len() > 1000);
    let mut d = bring_up(ModelConfig::host(), true);
    let faulted = replay(&mut d, &cmds);
    assert!(faulted.is_empty(), "{faulted:?}");
    assert_eq!(d.m.stats.commands, cmds.len() as u64);
    assert_eq!(d.m.stats.queue_errors, 0);
}

#[test]
fn a_guest_owned_vcmdq_rejects_exactly_the_opcodes_linux_keeps_off_it() {
    let cmds = fixture();
    let mut d = bring_up(ModelConfig::guest(), false);
    let faulted = replay(&mut d, &cmds);
    let allowed = ["TLBI_NH_ASID", "TLBI_NH_VA", "ATC_INV", "CMD_SYNC"];
    let expected: Vec<String> = cmds
        .iter()
        .map(|c| command_name(c[0]).into_owned())
        .filter(|n| !allowed.contains(&n.as_str()))
        .collect();
    assert!(
        !expected.is_empty(),
        "the boot has configuration commands (CFGI_*, PREFETCH_CFG)"
    );
    assert_eq!(faulted, expected);
    assert_eq!(d.m.stats.queue_errors, expected.len() as u64);
    // Everything else ran (each faulting entry ran as the CMD_SYNC written over it).
    assert_eq!(d.m.stats.commands, cmds.len() as u64);
    assert_eq!(
        d.m.lvcmdq_err_map(0),
        0,
        "maps clear on acknowledgement (the default)"
    );
}
