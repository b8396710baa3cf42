//! The x86 guest code of the KVM engine and the parameter block it reads: 32-bit protected-mode
//! code (flat segments set by the VMM, no paging) that writes a batch into its ring in guest RAM,
//! rings the doorbell (a store to PROD), polls CONS until the batch is consumed, records the
//! guest-visible latency (two `rdtsc`), and makes one port write per batch so the VMM can pace it.

use cmdqv_core::{mem::GuestMemory as _, sim::ram::Ram};

use super::{guest_a64, layout};

/// The guest program of each architecture, all over the one parameter block below: the VMM
/// loads `code()` at `layout::CODE_OFF` and points the vCPU at it with the block's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestArch {
    /// 32-bit protected mode ([`CODE`]; `esi` = the block).
    X86,
    /// A64 with the MMU off ([`guest_a64`]; `x0` = the block).
    Aarch64,
}

impl GuestArch {
    /// This host's architecture.
    pub const HOST: Self = if cfg!(target_arch = "aarch64") {
        Self::Aarch64
    } else {
        Self::X86
    };

    /// The program's bytes.
    pub fn code(self) -> Vec<u8> {
        match self {
            Self::X86 => CODE.to_vec(),
            Self::Aarch64 => guest_a64::code(),
        }
    }
}

/// Parameter block offsets (all u32). The VMM writes 0..0x30 before the start and the stop word
/// at any time; the guest writes PROD back, its batch count and its status.
pub mod param {
    /// GPA of the batch the guest copies into the ring (`N` commands of 16 bytes).
    pub const SRC: u64 = 0x00;
    pub const N: u64 = 0x04;
    pub const RING: u64 = 0x08;
    /// Ring entries - 1.
    pub const INDEX_MASK: u64 = 0x0c;
    /// PROD/CONS index and wrap bit: 2 × entries - 1.
    pub const WRAP_MASK: u64 = 0x10;
    pub const PROD_REG: u64 = 0x14;
    pub const CONS_REG: u64 = 0x18;
    /// PROD (index and wrap), the guest's shadow.
    pub const PROD: u64 = 0x1c;
    /// GPA of the latency ring: one u32 TSC delta per batch.
    pub const LAT_BUF: u64 = 0x20;
    /// Latency ring entries - 1.
    pub const LAT_MASK: u64 = 0x24;
    /// CONS polls before the guest gives up on a batch (status 1).
    pub const POLL_MAX: u64 = 0x28;
    /// GPA of the pacing page (aarch64: a store there is the pacing exit, 8 above it the stop;
    /// the x86 program uses a port instead).
    pub const PACING: u64 = 0x2c;
    /// Non-zero: stop at the next check (in its own 16 bytes: the VMM stores it whole).
    pub const STOP: u64 = 0x30;
    pub const BATCHES: u64 = 0x40;
    /// 0 while running; 1: a batch was never consumed.
    pub const STATUS: u64 = 0x44;
    pub const LEN: u64 = 0x50;
}

/// Status word: the guest gave up polling CONS.
pub const STATUS_STUCK: u32 = 1;
/// The port the guest writes once per batch (its pacing exit).
pub const PACING_PORT: u16 = 0x80;

/// The guest program (`esi` = parameter block). Assembled with `as --32`; the listing is kept
/// beside the bytes.
pub const CODE: &[u8] = &[
    // top:
    0x83, 0x7e, 0x30, 0x00, // cmpl $0x0,0x30(%esi)
    0x0f, 0x85, 0x81, 0x00, 0x00, 0x00, // jne 8b <done>
    0x0f, 0x31, // rdtsc
    0x89, 0xc5, // mov %eax,%ebp
    0x8b, 0x5e, 0x1c, // mov 0x1c(%esi),%ebx
    0x8b, 0x4e, 0x04, // mov 0x4(%esi),%ecx
    0x8b, 0x16, // mov (%esi),%edx
    // copy:
    0x89, 0xd8, // mov %ebx,%eax
    0x23, 0x46, 0x0c, // and 0xc(%esi),%eax
    0xc1, 0xe0, 0x04, // shl $0x4,%eax
    0x03, 0x46, 0x08, // add 0x8(%esi),%eax
    0x8b, 0x3a, // mov (%edx),%edi
    0x89, 0x38, // mov %edi,(%eax)
    0x8b, 0x7a, 0x04, // mov 0x4(%edx),%edi
    0x89, 0x78, 0x04, // mov %edi,0x4(%eax)
    0x8b, 0x7a, 0x08, // mov 0x8(%edx),%edi
    0x89, 0x78, 0x08, // mov %edi,0x8(%eax)
    0x8b, 0x7a, 0x0c, // mov 0xc(%edx),%edi
    0x89, 0x78, 0x0c, // mov %edi,0xc(%eax)
    0x83, 0xc2, 0x10, // add $0x10,%edx
    0x43, // inc %ebx
    0x23, 0x5e, 0x10, // and 0x10(%esi),%ebx
    0x49, // dec %ecx
    0x75, 0xd5, // jne 16 <copy>
    0x89, 0x5e, 0x1c, // mov %ebx,0x1c(%esi)
    0x8b, 0x46, 0x14, // mov 0x14(%esi),%eax
    0x89, 0x18, // mov %ebx,(%eax)
    0x8b, 0x4e, 0x28, // mov 0x28(%esi),%ecx
    // poll:
    0x8b, 0x46, 0x18, // mov 0x18(%esi),%eax
    0x8b, 0x00, // mov (%eax),%eax
    0x23, 0x46, 0x10, // and 0x10(%esi),%eax
    0x39, 0xd8, // cmp %ebx,%eax
    0x74, 0x14, // je 6c <consumed>
    0x83, 0x7e, 0x30, 0x00, // cmpl $0x0,0x30(%esi)
    0x75, 0x2d, // jne 8b <done>
    0xf3, 0x90, // pause
    0x49, // dec %ecx
    0x75, 0xe9, // jne 4c <poll>
    0xc7, 0x46, 0x44, 0x01, 0x00, 0x00, 0x00, // movl $0x1,0x44(%esi)
    0xeb, 0x1f, // jmp 8b <done>
    // consumed:
    0x0f, 0x31, // rdtsc
    0x29, 0xe8, // sub %ebp,%eax
    0x8b, 0x4e, 0x40, // mov 0x40(%esi),%ecx
    0x89, 0xca, // mov %ecx,%edx
    0x23, 0x56, 0x24, // and 0x24(%esi),%edx
    0xc1, 0xe2, 0x02, // shl $0x2,%edx
    0x03, 0x56, 0x20, // add 0x20(%esi),%edx
    0x89, 0x02, // mov %eax,(%edx)
    0x41, // inc %ecx
    0x89, 0x4e, 0x40, // mov %ecx,0x40(%esi)
    0xe6, 0x80, // out %al,$0x80
    0xe9, 0x75, 0xff, 0xff, 0xff, // jmp 0 <top>
    // done:
    0xf4, // hlt
    0xeb, 0xfd, // jmp 8b <done>
];

/// One vCPU's job: where its queue's registers and ring are, what it submits.
#[derive(Clone, Debug)]
pub struct Job {
    pub batch: Vec<[u64; 2]>,
    pub ring: u64,
    pub log2size: u8,
    pub prod_reg: u64,
    pub cons_reg: u64,
    pub prod: u32,
    pub poll_max: u32,
}

/// Where one vCPU's block, batch and latency ring live in guest RAM.
#[derive(Copy, Clone, Debug)]
pub struct Area {
    pub block: u64,
    pub src: u64,
    pub lat: u64,
    pub lat_entries: u32,
}

/// Guest addresses are 32-bit (no paging): a job must fit below 4 GiB.
fn u32_addr(gpa: u64, what: &str) -> Result<u32, String> {
    u32::try_from(gpa).map_err(|_| format!("{what} {gpa:#x} is above 4 GiB"))
}

/// Writes `job` into guest RAM at `area` (the batch, then the parameter block).
pub fn write_job(ram: &Ram, area: Area, job: &Job) -> Result<(), String> {
    let entries = 1u32 << job.log2size;
    if job.batch.is_empty() || job.batch.len() >= entries as usize {
        return Err(format!(
            "a batch of {} commands does not fit a {entries}-entry ring",
            job.batch.len()
        ));
    }
    for (i, c) in job.batch.iter().enumerate() {
        ram.store_cmd(area.src + 16 * i as u64, *c)
            .map_err(|e| format!("batch: {e}"))?;
    }
    let w = |lo: u32, hi: u32| lo as u64 | (hi as u64) << 32;
    let words = [
        [
            w(u32_addr(area.src, "batch")?, job.batch.len() as u32),
            w(u32_addr(job.ring, "ring")?, entries - 1),
        ],
        [
            w(2 * entries - 1, u32_addr(job.prod_reg, "PROD")?),
            w(u32_addr(job.cons_reg, "CONS")?, job.prod),
        ],
        [
            w(u32_addr(area.lat, "latency ring")?, area.lat_entries - 1),
            w(job.poll_max, layout::PACING_GPA as u32),
        ],
        [0, 0],
        [0, 0],
    ];
    for (i, pair) in words.into_iter().enumerate() {
        ram.store_cmd(area.block + 16 * i as u64, pair)
            .map_err(|e| format!("parameter block: {e}"))?;
    }
    Ok(())
}

/// Tells the guest to stop at its next check.
pub fn request_stop(ram: &Ram, area: Area) {
    let _ = ram.store_cmd(area.block + param::STOP, [1, 0]);
}

/// Reads a u32 of the parameter block.
pub fn read_param(ram: &Ram, area: Area, off: u64) -> u32 {
    let mut b = [0u8; 4];
    let _ = ram.read(area.block + off, &mut b);
    u32::from_le_bytes(b)
}

/// The last `min(batches, lat_entries)` latency samples (TSC cycles).
pub fn latencies(ram: &Ram, area: Area, batches: u32) -> Vec<u32> {
    let n = batches.min(area.lat_entries) as usize;
    let mut b = vec![0u8; 4 * n];
    if ram.read(area.lat, &mut b).is_err() {
        return Vec::new();
    }
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area() -> Area {
        Area {
            block: 0x2000,
            src: 0x2100,
            lat: 0x3000,
            lat_entries: 16,
        }
    }

    #[test]
    fn the_parameter_block_holds_what_the_guest_code_reads() {
        let ram = Ram::new(0x1000, 0x10000).unwrap();
        let area = area();
        let job = Job {
            batch: vec![[1, 2], [3, 4]],
            ring: 0x4000,
            log2size: 4,
            prod_reg: 0x0900_0098,
            cons_reg: 0x0900_009c,
            prod: 0x13,
            poll_max: 1000,
        };
        write_job(&ram, area, &job).unwrap();
        let p = |o| read_param(&ram, area, o);
        assert_eq!(
            [
                p(param::SRC),
                p(param::N),
                p(param::RING),
                p(param::INDEX_MASK)
            ],
            [0x2100, 2, 0x4000, 15]
        );
        assert_eq!(
            [
                p(param::WRAP_MASK),
                p(param::PROD_REG),
                p(param::CONS_REG),
                p(param::PROD)
            ],
            [31, 0x0900_0098, 0x0900_009c, 0x13]
        );
        assert_eq!(
            [
                p(param::LAT_BUF),
                p(param::LAT_MASK),
                p(param::POLL_MAX),
                p(param::STOP)
            ],
            [0x3000, 15, 1000, 0]
        );
        assert_eq!(ram.read_cmd(0x2110).unwrap(), [3, 4]);
        request_stop(&ram, area);
        assert_eq!(p(param::STOP), 1);
        assert_eq!(p(param::BATCHES), 0);
    }

    #[test]
    fn jobs_that_the_guest_cannot_run_are_refused() {
        let ram = Ram::new(0x1000, 0x10000).unwrap();
        let area = area();
        let mut job = Job {
            batch: vec![[1, 2]; 16],
            ring: 0x4000,
            log2size: 4,
            prod_reg: 0,
            cons_reg: 0,
            prod: 0,
            poll_max: 1,
        };
        assert!(
            write_job(&ram, area, &job).is_err(),
            "a batch filling the ring"
        );
        job.batch.truncate(2);
        job.ring = 1 << 33;
        assert!(write_job(&ram, area, &job).is_err(), "a ring above 4 GiB");
    }

    #[test]
    fn the_code_is_position_independent_and_ends_in_a_halt_loop() {
        // Every branch is relative (no absolute address in the code), so it runs wherever the
        // VMM loads it; the last instructions are `hlt; jmp hlt`.
        assert_eq!(&CODE[CODE.len() - 3..], &[0xf4, 0xeb, 0xfd]);
        assert!(CODE.windows(2).any(|w| w == [0xe6, PACING_PORT as u8]));
    }
}
