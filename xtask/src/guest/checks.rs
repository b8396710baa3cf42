//! The assertions on what `cargo xtask guest --inside` brings out of the guest: the guest's
//! `cmdqv doctor` finds kprobe or fentry usable, `cmdqv sim` traced its VMM with eBPF and lost
//! nothing, `cmdqv sample` read the sim VMM's LVCMDQs through its page0 mapping at the right
//! offset, the guest runs with the page size its kernel was built for, and `cmdqv host` counted
//! per opcode exactly the commands QEMU consumed from the ring slots it saw the driver write.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::qemu_log::{Consumed, cmdqv_name, consumed, window};

/// One assertion's outcome, with what was found.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn parse(what: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} does not parse as JSON: {e}"))
}

fn check(name: &'static str, r: Result<String, String>) -> Check {
    match r {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
        },
        Err(detail) => Check {
            name,
            ok: false,
            detail,
        },
    }
}

/// doctor.json: `program_types` has kprobe or fentry available. The detail names both.
pub fn doctor_kernel_probes(doctor: &str) -> Check {
    check("doctor: kprobe or fentry", doctor_inner(doctor))
}

fn doctor_inner(doctor: &str) -> Result<String, String> {
    let v = parse("doctor.json", doctor)?;
    let types = v["program_types"]
        .as_array()
        .ok_or("doctor.json has no program_types")?;
    let status = |t: &str| {
        types
            .iter()
            .find(|p| p["program_type"] == t)
            .map(|p| (p["available"] == true, p["reason"].as_str().unwrap_or("")))
    };
    let (kprobe, fentry) = (status("kprobe"), status("fentry"));
    let show = |t: &str, s: Option<(bool, &str)>| match s {
        Some((true, _)) => format!("{t} available"),
        Some((false, why)) => format!("{t} unavailable ({why})"),
        None => format!("{t} not reported"),
    };
    let detail = format!("{}, {}", show("kprobe", kprobe), show("fentry", fentry));
    let usable = |s: Option<(bool, &str)>| s.is_some_and(|(ok, _)| ok);
    if usable(kprobe) || usable(fentry) {
        Ok(detail)
    } else {
        Err(detail)
    }
}

/// sim.json: `source` is "ebpf", `drops` is 0 and events were seen.
pub fn sim_ebpf(sim: &str) -> Check {
    check("sim: eBPF source, 0 drops", sim_inner(sim))
}

fn sim_inner(sim: &str) -> Result<String, String> {
    let v = parse("sim.json", sim)?;
    let source = v["source"].as_str().unwrap_or("(none)");
    let drops = v["drops"].as_u64();
    let events = v["events"].as_u64().unwrap_or(0);
    let detail = format!(
        "source {source}, {events} events, drops {}",
        drops.map_or("(none)".into(), |d| d.to_string())
    );
    if source == "ebpf" && drops == Some(0) && events > 0 {
        Ok(detail)
    } else {
        Err(detail)
    }
}

/// LVCMDQs of the sim VMM that `sample` reads (the hw-errors scenario's two vCPUs).
pub const SAMPLED_LVCMDQS: u64 = 2;

/// sample.jsonl (`cmdqv sample --json`, one object per interval): the LVCMDQs it found enabled
/// are exactly 0..`lvcmdqs` and consumed commands. Reading page0 at a wrong offset (0x1000 off
/// on a 16 KiB kernel) shows other slot numbers or none.
pub fn sample_page0(sample: &str, lvcmdqs: u64) -> Check {
    check("sample: page0 LVCMDQs", sample_inner(sample, lvcmdqs))
}

fn sample_inner(sample: &str, lvcmdqs: u64) -> Result<String, String> {
    let (mut seen, mut commands, mut intervals) = (BTreeSet::new(), 0, 0);
    for line in sample.lines().filter(|l| !l.trim().is_empty()) {
        let v = parse("a sample.jsonl line", line)?;
        intervals += 1;
        for q in v["queues"]
            .as_array()
            .ok_or("a sample line has no queues")?
        {
            seen.insert(q["lidx"].as_u64().ok_or("a sampled queue has no lidx")?);
            commands += q["commands"].as_u64().unwrap_or(0);
        }
    }
    let want: BTreeSet<u64> = (0..lvcmdqs).collect();
    let detail = format!("{intervals} intervals, LVCMDQs {seen:?}, {commands} commands");
    if seen == want && commands > 0 {
        Ok(detail)
    } else {
        Err(format!("{detail}; expected LVCMDQs {want:?} with commands"))
    }
}

/// uname.txt: its `PAGESIZE N …` line says `want`.
pub fn page_size(uname: &str, want: u64) -> Check {
    check("uname: page size", page_inner(uname, want))
}

fn page_inner(uname: &str, want: u64) -> Result<String, String> {
    let line = uname
        .lines()
        .find_map(|l| l.strip_prefix("PAGESIZE "))
        .ok_or("uname.txt has no PAGESIZE line")?;
    let got: u64 = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unreadable page size: {line}"))?;
    let detail = format!("{got} bytes, expected {want}");
    if got == want { Ok(detail) } else { Err(detail) }
}

/// host.json against QEMU's trace log of the same boot. cmdqv reports, for the one command
/// queue of the guest's SMMU, the ring slots its batches wrote (first slot, count, and that no
/// slot between was missed); QEMU's log names the ring slot of every command it consumed. Over
/// exactly those slots the per-opcode counts must be equal. The window is bracketed by the
/// kernel's own ring pointers, so commands issued before the probes attached or after they went
/// are outside it on both sides, whatever the two vCPUs did meanwhile.
pub fn host_matches_qemu(host: &str, qemu_trace: &str) -> Check {
    check(
        "host: per-opcode counts = QEMU's over the same ring slots",
        host_inner(host, qemu_trace),
    )
}

/// The one host queue row of host.json, after the checks that make its counts comparable.
fn host_row(v: &Value) -> Result<&Value, String> {
    let rows: Vec<&Value> = v["queues"]
        .as_array()
        .ok_or("host.json has no queues")?
        .iter()
        .filter(|q| q["host"].is_object())
        .collect();
    let [row] = rows[..] else {
        return Err(format!(
            "host.json has {} host queue rows; this guest's SMMU has one command queue",
            rows.len()
        ));
    };
    let (drops, missed) = (v["drops"].as_u64(), row["host"]["missed"].as_u64());
    if drops != Some(0) || missed != Some(0) {
        return Err(format!(
            "cmdqv lost events: drops {drops:?}, missed commands {missed:?}"
        ));
    }
    Ok(row)
}

fn host_inner(host: &str, qemu_trace: &str) -> Result<String, String> {
    let v = parse("host.json", host)?;
    let row = host_row(&v)?;
    let w = &row["host"]["window"];
    let num = |k: &str| {
        w[k].as_u64()
            .ok_or(format!("host.json's ring window has no {k}"))
    };
    let (log2, first, slots) = (num("log2size")?, num("first")?, num("slots")?);
    if w["contiguous"] != true {
        return Err(format!(
            "cmdqv's batches do not cover one contiguous stretch of ring slots from {first:#x} \
             ({slots} slots, {} batches without a ring pointer): a batch was missed",
            w["unplaced"]
        ));
    }
    let ours: BTreeMap<String, u64> = serde_json::from_value(row["opcodes"].clone())
        .map_err(|e| format!("host.json's opcodes: {e}"))?;
    if ours.values().sum::<u64>() != slots {
        return Err(format!(
            "cmdqv counted {ours:?} but its batches wrote {slots} slots"
        ));
    }
    let stream = consumed(qemu_trace)?;
    let (log2, first) = (log2 as u32, first as u32);
    let taken = window(&stream, log2, first, slots as usize)?;
    let mut theirs = BTreeMap::new();
    for c in taken {
        *theirs.entry(cmdqv_name(&c.opcode)).or_insert(0u64) += 1;
    }
    let same_slots = recent_match(row, taken, log2)?;
    let detail = format!(
        "{slots} commands in ring slots {first:#x}.. (2^{log2} entries); cmdqv {ours:?}, \
         QEMU {theirs:?}; the last {same_slots} cmdqv kept name QEMU's command at their slot"
    );
    if ours == theirs && ours.contains_key("CMD_SYNC") {
        Ok(detail)
    } else {
        Err(detail)
    }
}

/// The recent commands host.json keeps (ring pointer, decoded text) against QEMU's command at
/// that slot of the window: a ring pointer cmdqv got wrong by an even number of slots could
/// leave the counts of a regular stream equal, but not the commands slot by slot. Returns how
/// many were compared.
fn recent_match(row: &Value, taken: &[Consumed], log2: u32) -> Result<usize, String> {
    let at: BTreeMap<u64, &str> = taken
        .iter()
        .map(|c| {
            (
                u64::from(c.index) | u64::from(c.wrap) << log2,
                c.opcode.as_str(),
            )
        })
        .collect();
    let recent = row["recent"]
        .as_array()
        .ok_or("host.json keeps no recent commands")?;
    for r in recent {
        let (index, text) = (r["index"].as_u64(), r["text"].as_str().unwrap_or(""));
        let ours = text.split_whitespace().next().unwrap_or("");
        let theirs = index.and_then(|i| at.get(&i)).map(|q| cmdqv_name(q));
        if theirs.as_deref() != Some(ours) {
            return Err(format!(
                "cmdqv's command at ring slot {index:?} is {text:?}, QEMU consumed {theirs:?} there"
            ));
        }
    }
    Ok(recent.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doctor(kprobe: bool, fentry: bool) -> String {
        format!(
            r#"{{"checks":[],"program_types":[
              {{"program_type":"uprobe","available":true,"reason":"loaded and attached","meaning":""}},
              {{"program_type":"kprobe","available":{kprobe},"reason":"no kprobe PMU","meaning":""}},
              {{"program_type":"fentry","available":{fentry},"reason":"EPERM","meaning":""}}]}}"#
        )
    }

    #[test]
    fn doctor_needs_kprobe_or_fentry() {
        assert!(doctor_kernel_probes(&doctor(true, false)).ok);
        assert!(doctor_kernel_probes(&doctor(false, true)).ok);
        let c = doctor_kernel_probes(&doctor(false, false));
        assert!(!c.ok);
        assert_eq!(
            c.detail,
            "kprobe unavailable (no kprobe PMU), fentry unavailable (EPERM)"
        );
        assert!(!doctor_kernel_probes(r#"{"checks":[]}"#).ok);
        assert!(!doctor_kernel_probes("cmdqv: error").ok);
    }

    #[test]
    fn sim_needs_ebpf_no_drops_and_events() {
        let ok = r#"{"source":"ebpf","events":120,"drops":0,"queues":[]}"#;
        assert!(sim_ebpf(ok).ok);
        assert!(!sim_ebpf(r#"{"source":"in-process","events":120,"drops":0}"#).ok);
        assert!(!sim_ebpf(r#"{"source":"ebpf","events":120,"drops":3}"#).ok);
        assert!(!sim_ebpf(r#"{"source":"ebpf","events":0,"drops":0}"#).ok);
        assert!(
            !sim_ebpf(r#"{"source":"ebpf","events":5}"#).ok,
            "drops missing"
        );
        assert!(!sim_ebpf(&format!("{ok}\n{ok}")).ok, "two documents");
    }

    #[test]
    fn sample_needs_exactly_the_vmm_queues_with_commands() {
        let line = |l: &[(u64, u64)]| {
            let qs: Vec<String> = l
                .iter()
                .map(|(i, c)| format!(r#"{{"lidx":{i},"enabled":true,"commands":{c}}}"#))
                .collect();
            format!(r#"{{"pid":7,"t_s":0.5,"queues":[{}]}}"#, qs.join(","))
        };
        let ok = format!("{}\n{}\n", line(&[]), line(&[(0, 5), (1, 9)]));
        let c = sample_page0(&ok, 2);
        assert!(c.ok, "{c:?}");
        assert_eq!(c.detail, "2 intervals, LVCMDQs {0, 1}, 14 commands");
        // page0 read 0x1000 too early: slots 32 and 33.
        assert!(!sample_page0(&line(&[(32, 5), (33, 9)]), 2).ok);
        assert!(!sample_page0(&line(&[(0, 0), (1, 0)]), 2).ok, "no commands");
        assert!(!sample_page0(&line(&[(0, 5)]), 2).ok, "a queue missing");
        assert!(!sample_page0("", 2).ok);
        assert!(!sample_page0("cmdqv: no page0\n", 2).ok);
    }

    #[test]
    fn page_size_reads_the_pagesize_line() {
        let u = "Linux (none) 6.12.117+deb13-arm64-16k #1 SMP aarch64 GNU/Linux\n\
                 PAGESIZE 16384 (KernelPageSize in /proc/self/smaps: busybox has no getconf)\n";
        assert!(page_size(u, 16384).ok);
        let c = page_size(u, 4096);
        assert!(!c.ok);
        assert_eq!(c.detail, "16384 bytes, expected 4096");
        assert!(!page_size("Linux x\n", 4096).ok);
        assert!(!page_size("PAGESIZE  (x)\n", 4096).ok);
    }

    fn host_json(opcodes: &str, first: u32, slots: u64, contiguous: bool, drops: u64) -> String {
        host_json_recent(opcodes, first, slots, contiguous, drops, RECENT)
    }

    /// The last two commands of the window below, as host.json keeps them.
    const RECENT: &str = r#"[{"index":5,"text":"TLBI_NH_VA vmid=0 asid=1 va=0x1000"},
                             {"index":6,"text":"CMD_SYNC cs=SEV"}]"#;

    fn host_json_recent(
        opcodes: &str,
        first: u32,
        slots: u64,
        contiguous: bool,
        drops: u64,
        recent: &str,
    ) -> String {
        format!(
            r#"{{"source":"ebpf","drops":{drops},"queues":[{{"name":"main","opcodes":{opcodes},
              "recent":{recent},
              "host":{{"cmdq":"0xffff","missed":0,"window":{{"log2size":2,"first":{first},
              "end":0,"slots":{slots},"batches":2,"unplaced":0,"contiguous":{contiguous}}}}}}}]}}"#
        )
    }

    /// A 4-entry ring: a boot-time CFGI before cmdqv attached, then two batches of a TLBI and
    /// a CMD_SYNC that wrap the ring, then one more batch after cmdqv stopped.
    const TRACE: &str = "\
smmuv3_cmdq_consume prod=3 cons=2 prod.wrap=0 cons.wrap=0
smmuv3_cmdq_opcode <--- SMMU_CMD_CFGI_STE
smmuv3_cmdq_consume prod=3 cons=3 prod.wrap=0 cons.wrap=0
smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_VA
smmuv3_cmdq_consume prod=3 cons=0 prod.wrap=0 cons.wrap=1
smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC
smmuv3_cmdq_consume prod=3 cons=1 prod.wrap=0 cons.wrap=1
smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_VA
smmuv3_cmdq_consume prod=3 cons=2 prod.wrap=0 cons.wrap=1
smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC
smmuv3_cmdq_consume prod=0 cons=3 prod.wrap=0 cons.wrap=1
smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_ASID
";

    #[test]
    fn host_counts_must_equal_qemus_over_the_same_slots() {
        let ops = r#"{"CMD_SYNC":2,"TLBI_NH_VA":2}"#;
        let c = host_matches_qemu(&host_json(ops, 3, 4, true, 0), TRACE);
        assert!(c.ok, "{c:?}");
        // One TLBI too many, one too few, or an opcode misnamed: not equal.
        for bad in [
            r#"{"CMD_SYNC":2,"TLBI_NH_VA":3}"#,
            r#"{"CMD_SYNC":2,"TLBI_NH_VA":1,"TLBI_NH_ASID":1}"#,
        ] {
            let slots = if bad.contains(":3") { 5 } else { 4 };
            assert!(
                !host_matches_qemu(&host_json(bad, 3, slots, true, 0), TRACE).ok,
                "{bad}"
            );
        }
        // The window starts one slot early: QEMU's counts there include the CFGI.
        let early = r#"{"CFGI_STE":1,"CMD_SYNC":1,"TLBI_NH_VA":2}"#;
        let recent = r#"[{"index":5,"text":"TLBI_NH_VA"}]"#;
        assert!(host_matches_qemu(&host_json_recent(early, 2, 4, true, 0, recent), TRACE).ok);
        assert!(!host_matches_qemu(&host_json(ops, 2, 4, true, 0), TRACE).ok);
    }

    #[test]
    fn host_recent_commands_must_name_qemus_command_at_their_slot() {
        let ops = r#"{"CMD_SYNC":2,"TLBI_NH_VA":2}"#;
        // Ring pointers two slots off: the counts agree, the slots do not.
        let shifted = r#"[{"index":3,"text":"CMD_SYNC"},{"index":4,"text":"TLBI_NH_VA"}]"#;
        let c = host_matches_qemu(&host_json_recent(ops, 3, 4, true, 0, shifted), TRACE);
        assert!(!c.ok && c.detail.contains("ring slot"), "{c:?}");
        let outside = r#"[{"index":7,"text":"TLBI_NH_ASID"}]"#;
        assert!(!host_matches_qemu(&host_json_recent(ops, 3, 4, true, 0, outside), TRACE).ok);
    }

    #[test]
    fn host_check_refuses_incomparable_outputs() {
        let ops = r#"{"CMD_SYNC":2,"TLBI_NH_VA":2}"#;
        let gap = host_matches_qemu(&host_json(ops, 3, 4, false, 0), TRACE);
        assert!(!gap.ok && gap.detail.contains("contiguous"), "{gap:?}");
        let lost = host_matches_qemu(&host_json(ops, 3, 4, true, 1), TRACE);
        assert!(!lost.ok && lost.detail.contains("lost"), "{lost:?}");
        assert!(
            !host_matches_qemu(&host_json(ops, 3, 5, true, 0), TRACE).ok,
            "5 slots, 4 counted"
        );
        assert!(!host_matches_qemu(r#"{"drops":0,"queues":[]}"#, TRACE).ok);
        assert!(!host_matches_qemu("cmdqv: no probe", TRACE).ok);
        let no_sync = r#"{"TLBI_NH_VA":1}"#;
        assert!(!host_matches_qemu(&host_json(no_sync, 3, 1, true, 0), TRACE).ok);
    }
}
