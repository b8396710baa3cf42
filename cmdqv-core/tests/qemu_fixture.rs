//! The command stream of one real boot: a stock Debian arm64 6.12 kernel's arm-smmu-v3 driver
//! on stock QEMU 7.2's emulated SMMUv3 (`iommu.strict=1`, a 16 MiB virtio disk read whole),
//! captured by cmdqv's uprobes and checked against QEMU's own trace log of the same run.
//! Made with `CMDQV_QEMU_FIXTURE_DIR=cmdqv-core/tests/data cargo test --release -p cmdqv-tui
//! --test qemu_guest -- real_guest_on_qemu_7_2` (as root).
//!
//! Files: `qemu-guest-commands.bin` (16-byte commands, w0 then w1, little-endian, in fetch
//! order) and `qemu-guest-commands.json` (counts per opcode, CMDQ_PROD writes).

use std::collections::BTreeMap;

use cmdqv_core::{
    command::{op, opcode_name},
    qemu::{count_opcodes, read_command_stream},
};

const BIN: &[u8] = include_bytes!("data/qemu-guest-commands.bin");
const JSON: &str = include_str!("data/qemu-guest-commands.json");

fn fixture() -> (Vec<[u64; 2]>, serde_json::Value) {
    (
        read_command_stream(BIN).expect("whole 16-byte commands"),
        serde_json::from_str(JSON).expect("counts JSON"),
    )
}

#[test]
fn every_command_of_the_real_boot_decodes_to_a_known_opcode() {
    let (cmds, _) = fixture();
    assert!(cmds.len() > 1000);
    for (i, [w0, w1]) in cmds.iter().enumerate() {
        assert!(
            opcode_name(*w0 as u8).is_some(),
            "command {i}: {w0:#018x} {w1:#018x}"
        );
    }
}

#[test]
fn per_opcode_counts_match_the_recorded_counts() {
    let (cmds, json) = fixture();
    let want: BTreeMap<String, u64> = json["opcodes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(count_opcodes(&cmds), want);
    assert_eq!(json["commands"].as_u64(), Some(cmds.len() as u64));
}

#[test]
fn the_stream_has_the_shape_of_linux_strict_mode() {
    let (cmds, json) = fixture();
    // Every batch Linux issues ends in a CMD_SYNC, and every PROD write publishes one batch:
    // there are as many CMD_SYNCs as PROD writes, give or take the bring-up writes of PROD.
    let syncs = cmds.iter().filter(|c| c[0] as u8 == op::CMD_SYNC).count() as u64;
    let prods = json["prod_writes"].as_u64().unwrap();
    assert!(
        syncs <= prods && prods - syncs < 8,
        "{syncs} syncs, {prods} PROD writes"
    );
    // The last command is a CMD_SYNC.
    assert_eq!(cmds.last().unwrap()[0] as u8, op::CMD_SYNC);
    // Strict mode: TLBI_NH_VA is about half the stream, each followed by a CMD_SYNC.
    let va = cmds.iter().filter(|c| c[0] as u8 == op::TLBI_NH_VA).count();
    assert!(va * 3 > cmds.len(), "{va} of {}", cmds.len());
    for w in cmds.windows(2) {
        if w[0][0] as u8 == op::TLBI_NH_VA {
            assert_eq!(w[1][0] as u8, op::CMD_SYNC);
        }
    }
}
