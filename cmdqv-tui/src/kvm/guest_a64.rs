//! The aarch64 guest code of the KVM engine, for Grace hosts: the same loop as the x86 program
//! over the same parameter block (write the batch into the ring, ring the doorbell with a store
//! to PROD, poll CONS, record the latency from the virtual counter, one pacing store per batch)
//! in A64 with the MMU off (x0 = the parameter block; addresses are the block's 32-bit words,
//! zero-extended). Arm has no port I/O: the pacing exit is a store to the MMIO address at
//! `param::PACING`, and the stop a store 8 bytes above it, both outside every memslot. The words
//! are what `aarch64-linux-gnu-as` makes of [`LISTING`]; a test checks that, and runs them
//! through a small A64 interpreter against fake memory and MMIO.

/// The program's source, as assembled.
pub const LISTING: &str = "top:
	ldr w9, [x0, #0x30]
	cbnz w9, done
	mrs x10, cntvct_el0
	ldr w11, [x0, #0x1c]
	ldr w12, [x0, #0x04]
	ldr w13, [x0, #0x00]
copy:
	ldr w14, [x0, #0x0c]
	and w14, w11, w14
	ldr w15, [x0, #0x08]
	add x14, x15, x14, lsl #4
	ldp x16, x17, [x13], #16
	stp x16, x17, [x14]
	add w11, w11, #1
	ldr w14, [x0, #0x10]
	and w11, w11, w14
	subs w12, w12, #1
	b.ne copy
	str w11, [x0, #0x1c]
	dsb sy
	ldr w14, [x0, #0x14]
	str w11, [x14]
	ldr w12, [x0, #0x28]
poll:
	ldr w14, [x0, #0x18]
	ldr w14, [x14]
	ldr w15, [x0, #0x10]
	and w14, w14, w15
	cmp w14, w11
	b.eq consumed
	ldr w9, [x0, #0x30]
	cbnz w9, done
	yield
	subs w12, w12, #1
	b.ne poll
	mov w9, #1
	str w9, [x0, #0x44]
	b done
consumed:
	mrs x9, cntvct_el0
	sub w9, w9, w10
	ldr w12, [x0, #0x40]
	ldr w14, [x0, #0x24]
	and w14, w12, w14
	ldr w15, [x0, #0x20]
	str w9, [x15, w14, uxtw #2]
	add w12, w12, #1
	str w12, [x0, #0x40]
	ldr w14, [x0, #0x2c]
	str wzr, [x14]
	b top
done:
	ldr w14, [x0, #0x2c]
	str wzr, [x14, #8]
	b done
";

/// The encoded program (little-endian words), the source line beside each.
pub const WORDS: [u32; 51] = [
    // top:
    0xb9403009, // ldr w9, [x0, #0x30]
    0x350005e9, // cbnz w9, done
    0xd53be04a, // mrs x10, cntvct_el0
    0xb9401c0b, // ldr w11, [x0, #0x1c]
    0xb940040c, // ldr w12, [x0, #0x04]
    0xb940000d, // ldr w13, [x0, #0x00]
    // copy:
    0xb9400c0e, // ldr w14, [x0, #0x0c]
    0x0a0e016e, // and w14, w11, w14
    0xb940080f, // ldr w15, [x0, #0x08]
    0x8b0e11ee, // add x14, x15, x14, lsl #4
    0xa8c145b0, // ldp x16, x17, [x13], #16
    0xa90045d0, // stp x16, x17, [x14]
    0x1100056b, // add w11, w11, #1
    0xb940100e, // ldr w14, [x0, #0x10]
    0x0a0e016b, // and w11, w11, w14
    0x7100058c, // subs w12, w12, #1
    0x54fffec1, // b.ne copy
    0xb9001c0b, // str w11, [x0, #0x1c]
    0xd5033f9f, // dsb sy
    0xb940140e, // ldr w14, [x0, #0x14]
    0xb90001cb, // str w11, [x14]
    0xb940280c, // ldr w12, [x0, #0x28]
    // poll:
    0xb940180e, // ldr w14, [x0, #0x18]
    0xb94001ce, // ldr w14, [x14]
    0xb940100f, // ldr w15, [x0, #0x10]
    0x0a0f01ce, // and w14, w14, w15
    0x6b0b01df, // cmp w14, w11
    0x54000120, // b.eq consumed
    0xb9403009, // ldr w9, [x0, #0x30]
    0x35000269, // cbnz w9, done
    0xd503203f, // yield
    0x7100058c, // subs w12, w12, #1
    0x54fffec1, // b.ne poll
    0x52800029, // mov w9, #1
    0xb9004409, // str w9, [x0, #0x44]
    0x1400000d, // b done
    // consumed:
    0xd53be049, // mrs x9, cntvct_el0
    0x4b0a0129, // sub w9, w9, w10
    0xb940400c, // ldr w12, [x0, #0x40]
    0xb940240e, // ldr w14, [x0, #0x24]
    0x0a0e018e, // and w14, w12, w14
    0xb940200f, // ldr w15, [x0, #0x20]
    0xb82e59e9, // str w9, [x15, w14, uxtw #2]
    0x1100058c, // add w12, w12, #1
    0xb900400c, // str w12, [x0, #0x40]
    0xb9402c0e, // ldr w14, [x0, #0x2c]
    0xb90001df, // str wzr, [x14]
    0x17ffffd1, // b top
    // done:
    0xb9402c0e, // ldr w14, [x0, #0x2c]
    0xb90009df, // str wzr, [x14, #8]
    0x17fffffe, // b done
];

/// The program as bytes for guest RAM.
pub fn code() -> Vec<u8> {
    WORDS.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::kvm::guest::param;

    /// Assembles [`LISTING`] with Debian's aarch64 binutils (`cargo xtask test` installs
    /// binutils-aarch64-linux-gnu) and returns the text section's bytes.
    fn assemble() -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("cmdqv-a64-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (s, o, bin) = (dir.join("g.s"), dir.join("g.o"), dir.join("g.bin"));
        std::fs::write(&s, LISTING).unwrap();
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new(cmd).args(args).output();
            let out = out.unwrap_or_else(|e| {
                panic!(
                    "{cmd}: {e} (apt-get install binutils-aarch64-linux-gnu; cargo xtask test does)"
                )
            });
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(
            "aarch64-linux-gnu-as",
            &["-o".as_ref(), o.as_os_str(), s.as_os_str()],
        );
        let text = ["-O", "binary", "-j", ".text"].map(std::ffi::OsStr::new);
        let mut args: Vec<&std::ffi::OsStr> = text.to_vec();
        args.extend([o.as_os_str(), bin.as_os_str()]);
        run("aarch64-linux-gnu-objcopy", &args);
        let bytes = std::fs::read(&bin).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        bytes
    }

    #[test]
    fn the_words_are_what_the_aarch64_assembler_makes_of_the_listing() {
        assert_eq!(assemble(), code());
    }

    /// Fake guest memory and MMIO: RAM below `MMIO`, the doorbell and CONS registers and the
    /// pacing page above it.
    struct Machine {
        x: [u64; 32],
        z: bool,
        pc: usize,
        ram: BTreeMap<u64, u8>,
        counter: u64,
        /// MMIO stores (address, value) in order, and how many CONS polls saw the old value.
        stores: Vec<(u64, u32)>,
        cons: u32,
        polls: u32,
    }

    const PROD_REG: u64 = 0x0900_0098;
    const CONS_REG: u64 = 0x0900_009c;
    const PACING: u64 = 0x0a00_0000;
    const BLOCK: u64 = 0x4000;
    const SRC: u64 = 0x4100;
    const RING: u64 = 0x8000;
    const LAT: u64 = 0x9000;
    /// CONS catches up on the third poll after a doorbell (two polls see the old value).
    const SLOW_POLLS: u32 = 2;

    impl Machine {
        fn load(&self, a: u64, n: usize) -> u64 {
            (0..n).fold(0, |v, i| {
                v | (*self.ram.get(&(a + i as u64)).unwrap_or(&0) as u64) << (8 * i)
            })
        }

        fn store(&mut self, a: u64, v: u64, n: usize) {
            for i in 0..n {
                self.ram.insert(a + i as u64, (v >> (8 * i)) as u8);
            }
        }

        fn load32(&mut self, a: u64) -> u64 {
            if a != CONS_REG {
                return self.load(a, 4);
            }
            let prod = self
                .stores
                .iter()
                .rev()
                .find(|s| s.0 == PROD_REG)
                .map_or(0, |s| s.1);
            self.polls += 1;
            if self.polls > SLOW_POLLS {
                self.cons = prod;
            }
            self.cons as u64
        }

        fn store32(&mut self, a: u64, v: u64) {
            if a >= PROD_REG {
                self.stores.push((a, v as u32));
                if a == PROD_REG {
                    self.polls = 0;
                }
            } else {
                self.store(a, v, 4);
            }
        }

        fn reg(&self, r: u32) -> u64 {
            if r == 31 { 0 } else { self.x[r as usize] }
        }

        fn branch(&mut self, imm: u32, bits: u32) {
            let off = ((imm << (32 - bits)) as i32 >> (32 - bits)) as isize;
            self.pc = (self.pc as isize + off) as usize;
        }

        /// Executes one instruction of the subset the program uses.
        fn step(&mut self) {
            let w = WORDS[self.pc];
            let (rd, rn, rm) = (w & 31, (w >> 5) & 31, (w >> 16) & 31);
            let imm12 = ((w >> 10) & 0xfff) as u64;
            let mut next = self.pc + 1;
            let w32 = |v: u64| v & 0xffff_ffff;
            match w {
                _ if w & 0xffc0_0000 == 0xb940_0000 => {
                    self.x[rd as usize] = self.load32(self.reg(rn) + imm12 * 4)
                }
                _ if w & 0xffc0_0000 == 0xb900_0000 => {
                    self.store32(self.reg(rn) + imm12 * 4, self.reg(rd))
                }
                _ if w & 0xffe0_fc00 == 0xb820_5800 => {
                    self.store32(self.reg(rn) + (w32(self.reg(rm)) << 2), self.reg(rd))
                }
                _ if w & 0xffc0_0000 == 0xa8c0_0000 => {
                    let (a, rt2) = (self.reg(rn), (w >> 10) & 31);
                    self.x[rd as usize] = self.load(a, 8);
                    self.x[rt2 as usize] = self.load(a + 8, 8);
                    let imm7 = ((((w >> 15) & 0x7f) << 25) as i32 >> 25) as i64 * 8;
                    self.x[rn as usize] = (a as i64 + imm7) as u64;
                }
                _ if w & 0xffc0_0000 == 0xa900_0000 => {
                    let (a, rt2) = (self.reg(rn), (w >> 10) & 31);
                    self.store(a, self.reg(rd), 8);
                    self.store(a + 8, self.reg(rt2), 8);
                }
                _ if w & 0xff20_0000 == 0x0a00_0000 => {
                    self.x[rd as usize] = w32(self.reg(rn) & self.reg(rm))
                }
                _ if w & 0xff20_0000 == 0x8b00_0000 => {
                    self.x[rd as usize] = self.reg(rn) + (self.reg(rm) << ((w >> 10) & 63))
                }
                _ if w & 0xff80_0000 == 0x1100_0000 => {
                    self.x[rd as usize] = w32(self.reg(rn) + imm12)
                }
                _ if w & 0xff80_0000 == 0x7100_0000 => {
                    let v = w32(self.reg(rn).wrapping_sub(imm12));
                    self.z = v == 0;
                    self.x[rd as usize] = v;
                }
                _ if w & 0xff20_0000 == 0x4b00_0000 => {
                    self.x[rd as usize] = w32(self.reg(rn).wrapping_sub(self.reg(rm)))
                }
                _ if w & 0xff20_001f == 0x6b00_001f => {
                    self.z = w32(self.reg(rn)) == w32(self.reg(rm))
                }
                _ if w & 0xff00_0010 == 0x5400_0000 => {
                    let take = match w & 15 {
                        0 => self.z,
                        1 => !self.z,
                        c => panic!("condition {c} is not in the program"),
                    };
                    if take {
                        self.branch((w >> 5) & 0x7ffff, 19);
                        next = self.pc;
                    }
                }
                _ if w & 0xff00_0000 == 0x3500_0000 => {
                    if w32(self.reg(rd)) != 0 {
                        self.branch((w >> 5) & 0x7ffff, 19);
                        next = self.pc;
                    }
                }
                _ if w & 0xfc00_0000 == 0x1400_0000 => {
                    self.branch(w & 0x3ff_ffff, 26);
                    next = self.pc;
                }
                _ if w & 0xffff_ffe0 == 0xd53b_e040 => {
                    self.counter += 7;
                    self.x[rd as usize] = self.counter;
                }
                _ if w & 0xff80_0000 == 0x5280_0000 => {
                    self.x[rd as usize] = ((w >> 5) & 0xffff) as u64
                }
                0xd503_3f9f | 0xd503_203f => {} // dsb sy, yield
                _ => panic!(
                    "{w:#010x} at {} is not in the interpreter's subset",
                    self.pc
                ),
            }
            self.pc = next;
        }
    }

    /// The parameter block as the VMM writes it (the x86 program's layout).
    fn machine(batch: &[[u64; 2]], log2: u32, prod: u32) -> Machine {
        let mut m = Machine {
            x: [0; 32],
            z: false,
            pc: 0,
            ram: BTreeMap::new(),
            counter: 1000,
            stores: Vec::new(),
            cons: prod,
            polls: 0,
        };
        m.x[0] = BLOCK;
        for (i, c) in batch.iter().enumerate() {
            m.store(SRC + 16 * i as u64, c[0], 8);
            m.store(SRC + 16 * i as u64 + 8, c[1], 8);
        }
        let entries = 1u64 << log2;
        for (off, v) in [
            (param::SRC, SRC),
            (param::N, batch.len() as u64),
            (param::RING, RING),
            (param::INDEX_MASK, entries - 1),
            (param::WRAP_MASK, 2 * entries - 1),
            (param::PROD_REG, PROD_REG),
            (param::CONS_REG, CONS_REG),
            (param::PROD, prod as u64),
            (param::LAT_BUF, LAT),
            (param::LAT_MASK, 3),
            (param::POLL_MAX, 100),
            (param::PACING, PACING),
        ] {
            m.store(BLOCK + off, v, 4);
        }
        m
    }

    /// Runs until the `n`th pacing store (or the stop store); returns the MMIO stores.
    fn run_until(m: &mut Machine, n: usize) {
        for _ in 0..100_000 {
            m.step();
            let paced = m.stores.iter().filter(|s| s.0 == PACING).count();
            if paced == n || m.stores.iter().any(|s| s.0 == PACING + 8) {
                return;
            }
        }
        panic!(
            "the program did not reach {n} pacing stores: {:?}",
            m.stores
        );
    }

    #[test]
    fn the_program_writes_the_batch_rings_polls_cons_and_paces_once_per_batch() {
        let batch = [[0x11, 0x12], [0x21, 0x22], [0x31, 0x32]];
        // A 4-entry ring, PROD at index 3 with the wrap bit clear: the batch wraps around.
        let mut m = machine(&batch, 2, 3);
        run_until(&mut m, 1);
        // Slots 3, 0, 1 hold the commands; PROD moved by 3 with its wrap bit set: 6.
        for (slot, c) in [3u64, 0, 1].into_iter().zip(batch) {
            assert_eq!(
                [m.load(RING + 16 * slot, 8), m.load(RING + 16 * slot + 8, 8)],
                c
            );
        }
        assert_eq!(m.stores, [(PROD_REG, 6), (PACING, 0)]);
        assert_eq!(
            m.polls,
            SLOW_POLLS + 1,
            "CONS was polled until it caught up"
        );
        assert_eq!(m.load(BLOCK + param::PROD, 4), 6);
        assert_eq!(m.load(BLOCK + param::BATCHES, 4), 1);
        assert!(m.load(LAT, 4) > 0, "a latency from the counter");
        // The second batch starts where the first ended; a stop request ends the loop.
        run_until(&mut m, 2);
        assert_eq!(
            m.stores[2],
            (PROD_REG, 1),
            "index 6+3 = 9 wraps to 1 in an 8-index space"
        );
        m.store(BLOCK + param::STOP, 1, 4);
        run_until(&mut m, usize::MAX);
        assert_eq!(m.stores.last(), Some(&(PACING + 8, 0)));
        assert_eq!(m.load(BLOCK + param::STATUS, 4), 0);
    }

    #[test]
    fn a_cons_that_never_moves_is_given_up_with_the_stuck_status() {
        let mut m = machine(&[[1, 2]], 2, 0);
        // CONS never catches up: more slow polls than the guest's budget.
        m.store(BLOCK + param::POLL_MAX, 5, 4);
        for _ in 0..10_000 {
            if m.stores.iter().any(|s| s.0 == PACING + 8) {
                break;
            }
            if m.polls > 0 {
                m.polls = 0; // keep CONS behind
                m.cons = 0;
            }
            m.step();
        }
        assert_eq!(m.load(BLOCK + param::STATUS, 4), 1, "{:?}", m.stores);
        assert_eq!(m.load(BLOCK + param::BATCHES, 4), 0);
    }
}
