//! QEMU's own record of the commands its emulated SMMUv3 consumed, from its `-trace
//! smmuv3_cmdq_*` log: every `smmuv3_cmdq_opcode <--- NAME` line, placed at the ring slot the
//! `smmuv3_cmdq_consume prod=P cons=C prod.wrap=PW cons.wrap=CW` line before it names (QEMU logs
//! one before each command it reads). This is the independent side of the in-guest host check:
//! nothing here shares code with cmdqv.

/// One command QEMU consumed: its ring slot (index, wrap bit) and QEMU's name for its opcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumed {
    pub index: u32,
    pub wrap: u32,
    pub opcode: String,
}

/// `key=N` in a trace line's arguments.
fn field(args: &str, key: &str) -> Option<u32> {
    args.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim_end_matches(',').parse().ok())
}

/// The arguments of `event` when `line` is that event (after an optional `pid@time:` prefix).
fn event_args<'a>(line: &'a str, event: &str) -> Option<&'a str> {
    let at = line.find(event)?;
    let before = &line[..at];
    let prefix_ok = before.is_empty() || before.ends_with(':');
    let rest = &line[at + event.len()..];
    (prefix_ok && rest.starts_with(' ')).then_some(rest)
}

/// Every command QEMU consumed, in order.
pub fn consumed(log: &str) -> Result<Vec<Consumed>, String> {
    let mut out = Vec::new();
    let mut slot: Option<(u32, u32)> = None;
    for (n, line) in log.lines().enumerate() {
        if let Some(args) = event_args(line, "smmuv3_cmdq_consume") {
            let (cons, wrap) = (field(args, "cons"), field(args, "cons.wrap"));
            let (Some(cons), Some(wrap)) = (cons, wrap) else {
                return Err(format!(
                    "QEMU trace line {}: no cons/cons.wrap: {line}",
                    n + 1
                ));
            };
            slot = Some((cons, wrap));
        } else if let Some(args) = event_args(line, "smmuv3_cmdq_opcode") {
            let Some((index, wrap)) = slot.take() else {
                return Err(format!(
                    "QEMU trace line {}: a command without the consume line before it",
                    n + 1
                ));
            };
            let opcode = args.trim().trim_start_matches("<---").trim().to_string();
            out.push(Consumed {
                index,
                wrap,
                opcode,
            });
        }
    }
    Ok(out)
}

/// QEMU's opcode name in cmdqv's words (QEMU's `smmu_cmd_string` is `SMMU_CMD_` and the
/// specification's name, except for two): `SMMU_CMD_SYNC` is CMD_SYNC, `SMMU_CMD_PREFETCH_CONFIG`
/// is PREFETCH_CFG.
pub fn cmdqv_name(qemu: &str) -> String {
    match qemu.strip_prefix("SMMU_CMD_").unwrap_or(qemu) {
        "SYNC" => "CMD_SYNC".into(),
        "PREFETCH_CONFIG" => "PREFETCH_CFG".into(),
        other => other.into(),
    }
}

/// The stretch of `stream` that consumed ring slots `first`, `first + 1`, … (`slots` of them)
/// of a ring of 2^`log2` entries: where QEMU took exactly the slots cmdqv saw written. It must
/// exist once: every step inside it one slot further (a retried command breaks that), and no
/// second place in the log where the ring pointer came round to `first` again with such a run.
pub fn window(
    stream: &[Consumed],
    log2: u32,
    first: u32,
    slots: usize,
) -> Result<&[Consumed], String> {
    if log2 > 30 || slots == 0 {
        return Err(format!("no window: log2size {log2}, {slots} slots"));
    }
    let period = 2u64 << log2;
    let ptr = |c: &Consumed| u64::from(c.index) | u64::from(c.wrap) << log2;
    let sequential = |run: &[Consumed]| {
        run.windows(2)
            .all(|p| (ptr(&p[0]) + 1) % period == ptr(&p[1]))
    };
    let starts: Vec<usize> = (0..stream.len())
        .filter(|&k| ptr(&stream[k]) == u64::from(first))
        .filter(|&k| stream.get(k..k + slots).is_some_and(sequential))
        .collect();
    match starts[..] {
        [k] => Ok(&stream[k..k + slots]),
        [] => Err(format!(
            "QEMU's log has no run of {slots} consecutive commands from ring slot {first:#x} \
             ({} commands consumed in all)",
            stream.len()
        )),
        _ => Err(format!(
            "QEMU's log has {} runs of {slots} commands from ring slot {first:#x}: ambiguous",
            starts.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
smmuv3_write_mmio addr: 0x98 val:0x2 size: 0x4(0)
smmuv3_cmdq_consume prod=2 cons=0 prod.wrap=0 cons.wrap=0
smmuv3_cmdq_opcode <--- SMMU_CMD_CFGI_STE_RANGE
smmuv3_cmdq_cfgi_ste_range start=0x0 - end=0xffffffff
smmuv3_cmdq_consume prod=2 cons=1 prod.wrap=0 cons.wrap=0
smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC
smmuv3_cmdq_consume_out prod:2, cons:2, prod_wrap:0, cons_wrap:0 
1234@1700000000.000001:smmuv3_cmdq_consume prod=1 cons=3 prod.wrap=1 cons.wrap=0
1234@1700000000.000002:smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_VA
smmuv3_cmdq_consume prod=1 cons=0 prod.wrap=1 cons.wrap=1
smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC
";

    #[test]
    fn reads_each_command_at_its_ring_slot() {
        let c = consumed(LOG).unwrap();
        let got: Vec<(u32, u32, &str)> = c
            .iter()
            .map(|c| (c.index, c.wrap, c.opcode.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, "SMMU_CMD_CFGI_STE_RANGE"),
                (1, 0, "SMMU_CMD_SYNC"),
                (3, 0, "SMMU_CMD_TLBI_NH_VA"),
                (0, 1, "SMMU_CMD_SYNC"),
            ]
        );
        assert!(consumed("smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n").is_err());
        assert!(consumed("smmuv3_cmdq_consume prod=1\nsmmuv3_cmdq_opcode <--- X\n").is_err());
        assert!(consumed("").unwrap().is_empty());
    }

    #[test]
    fn names_translate_to_cmdqvs() {
        assert_eq!(cmdqv_name("SMMU_CMD_SYNC"), "CMD_SYNC");
        assert_eq!(cmdqv_name("SMMU_CMD_PREFETCH_CONFIG"), "PREFETCH_CFG");
        assert_eq!(cmdqv_name("SMMU_CMD_TLBI_NH_VA"), "TLBI_NH_VA");
        assert_eq!(cmdqv_name("UNKNOWN"), "UNKNOWN");
    }

    fn stream(slots: &[(u32, u32)]) -> Vec<Consumed> {
        slots
            .iter()
            .map(|&(index, wrap)| Consumed {
                index,
                wrap,
                opcode: "X".into(),
            })
            .collect()
    }

    #[test]
    fn the_window_is_the_one_run_of_consecutive_slots_from_first() {
        // A 4-entry ring (pointers 0..8): slots 2, 3, then 0 and 1 with the wrap bit.
        let s = stream(&[(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (2, 1)]);
        let w = window(&s, 2, 2, 4).unwrap();
        assert_eq!(w.first(), s.get(2));
        assert_eq!(w.last(), s.get(5));
        assert!(window(&s, 2, 2, 6).is_err(), "runs past the end of the log");
        // A retried command (slot 3 twice) breaks the run.
        let r = stream(&[(2, 0), (3, 0), (3, 0), (0, 1)]);
        assert!(window(&r, 2, 2, 3).is_err());
        // Two laps later the same pointer comes round again: ambiguous.
        let mut laps = stream(&[(2, 0), (3, 0)]);
        laps.extend(stream(&[
            (0, 1),
            (1, 1),
            (2, 1),
            (3, 1),
            (0, 0),
            (1, 0),
            (2, 0),
            (3, 0),
        ]));
        assert!(window(&laps, 2, 2, 2).unwrap_err().contains("ambiguous"));
        assert!(window(&s, 2, 7, 1).is_err(), "no such slot");
    }
}
