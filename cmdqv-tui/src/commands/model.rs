//! `cmdqv model --qtest ...`: drive the CMDQV device model (and the SMMU's register page) with
//! QEMU's qtest text protocol, guest RAM at 0x40000000.

use std::path::Path;

use anyhow::{Context as _, Result};
use clap::Args;
use cmdqv_core::{
    model::Personality,
    qtest::{self as q, QtestConfig},
    regs::Geometry,
};

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// `stdio`, `unix:PATH` (connect, as QEMU does) or `unix-listen:PATH`.
    #[arg(long, value_name = "stdio|unix:PATH|unix-listen:PATH")]
    pub qtest: String,
    /// CMDQV MMIO base address.
    #[arg(long, value_parser = parse_u64, default_value = "0x09100000")]
    pub mmio_base: u64,
    /// SMMUv3 register page base (the trapped SMMU command queue); `none` to leave it out.
    #[arg(long, default_value = "0x09050000")]
    pub smmu_base: String,
    /// Guest RAM size (e.g. 256M, 1G).
    #[arg(long, value_parser = parse_size, default_value = "256M")]
    pub ram_size: u64,
    /// `guest` (QEMU's: 1 VINTF, 2 VCMDQs) or `host` (64 VINTFs, 128 VCMDQs).
    #[arg(long, default_value = "guest", value_parser = ["guest", "host"])]
    pub geometry: String,
    /// `host` (HYP_OWN writable) or `guest` (HYP_OWN reads 0).
    #[arg(long, default_value = "guest", value_parser = ["guest", "host"])]
    pub personality: String,
}

pub fn run(a: ModelArgs) -> Result<()> {
    let cfg = config(&a)?;
    eprintln!(
        "cmdqv model: CMDQV MMIO at {:#x} (size {:#x}), SMMU at {}, RAM at {:#x} ({} MiB), {} geometry, {} personality",
        a.mmio_base,
        cfg.model_config().geometry.mmio_size(),
        cfg.smmu_base
            .map(|b| format!("{b:#x}"))
            .unwrap_or_else(|| "none".into()),
        q::RAM_BASE,
        a.ram_size >> 20,
        a.geometry,
        a.personality
    );
    let qtest = a.qtest.as_str();
    let stats = if qtest == "stdio" {
        q::serve(cfg, std::io::stdin().lock(), std::io::stdout().lock())?
    } else if let Some(p) = qtest.strip_prefix("unix-listen:") {
        q::serve_unix_listen(cfg, Path::new(p))?
    } else if let Some(p) = qtest.strip_prefix("unix:") {
        q::serve_unix(cfg, Path::new(p)).with_context(|| format!("connecting to {p}"))?
    } else {
        anyhow::bail!("--qtest takes stdio, unix:PATH or unix-listen:PATH, not `{qtest}`");
    };
    eprintln!("cmdqv model: {stats:?}");
    Ok(())
}

fn config(a: &ModelArgs) -> Result<QtestConfig> {
    let smmu_base = match a.smmu_base.as_str() {
        "none" => None,
        s => Some(parse_u64(s).map_err(anyhow::Error::msg)?),
    };
    Ok(QtestConfig {
        ram_size: a.ram_size,
        mmio_base: a.mmio_base,
        smmu_base,
        geometry: if a.geometry == "host" {
            Geometry::host()
        } else {
            Geometry::guest()
        },
        personality: if a.personality == "host" {
            Personality::Host
        } else {
            Personality::Guest
        },
    })
}

/// Parses `0x1234`, `1234`.
fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("bad number `{s}` (decimal or 0x-hex)"))
}

/// Parses `256M`, `1G`, `65536`, `64K`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (n, mul) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let v = parse_u64(n)?
        .checked_mul(mul)
        .ok_or_else(|| format!("size `{s}` too large"))?;
    if v == 0 || v > q::MAX_RAM {
        return Err(format!("RAM size `{s}` out of range (1 .. 16G)"));
    }
    Ok(v)
}
