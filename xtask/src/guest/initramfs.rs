//! The guest's initramfs: busybox, the virtio modules it needs (dependencies first, read from
//! each module's own `depends=`), and an /init that reads the disk and the RNG through the SMMU
//! and powers off; written as an uncompressed newc cpio archive.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::machine::DONE_MARKER;

/// Virtio modules the guest needs (dependencies are resolved from each module's `depends=`).
/// Ones built into the kernel have no file and are skipped.
pub const GUEST_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_rng", "virtio_net"];

/// Returns the modules to load in order (dependencies first) as (name, decompressed bytes).
pub fn resolve_modules(moddir: &Path, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = BTreeMap::new();
    index_modules(&moddir.join("kernel"), &mut files)?;
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for w in wanted {
        visit_module(w, &files, &mut seen, &mut order)?;
    }
    Ok(order)
}

fn norm(name: &str) -> String {
    name.replace('-', "_")
}

fn index_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            index_modules(&p, out)?;
        } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
            if let Some(stem) = n.strip_suffix(".ko.xz").or_else(|| n.strip_suffix(".ko")) {
                out.insert(norm(stem), p.clone());
            }
        }
    }
    Ok(())
}

fn visit_module(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<(String, Vec<u8>)>,
) -> Result<()> {
    let name = norm(name);
    if !seen.insert(name.clone()) {
        return Ok(());
    }
    let Some(path) = files.get(&name) else {
        return Ok(()); // built into the kernel
    };
    let bytes = if path.extension().is_some_and(|x| x == "xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .context("running xz (apt-get install xz-utils)")?;
        if !out.status.success() {
            bail!("xz -dc {} failed", path.display());
        }
        out.stdout
    } else {
        fs::read(path)?
    };
    for dep in modinfo_depends(&bytes) {
        visit_module(&dep, files, seen, order)?;
    }
    order.push((name, bytes));
    Ok(())
}

/// The `depends=` entry of a module's .modinfo section (found by its NUL-separated string).
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .enumerate()
        .filter(|(i, w)| *w == key && (*i == 0 || ko[i - 1] == 0))
        .map(|(i, _)| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        })
        .next()
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn init_script(modules: &[String]) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {mods}; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null && echo "read /dev/vda"
dd if=/dev/hwrng of=/dev/null bs=64 count=16 2>/dev/null && echo "read /dev/hwrng"
echo {DONE_MARKER}
poweroff -f
"#,
        mods = modules.join(" ")
    )
}

/// The standard guest's /init: read the disk and the RNG through the SMMU, power off.
pub fn standard_init(modules: &[(String, Vec<u8>)]) -> String {
    init_script(&module_names(modules))
}

pub fn module_names(modules: &[(String, Vec<u8>)]) -> Vec<String> {
    modules.iter().map(|(n, _)| n.clone()).collect()
}

/// A file of the initramfs beyond busybox, the modules and /init: (path without the leading
/// `/`, mode bits, contents). Its folder must be one of [`DIRS`].
pub type ExtraFile<'a> = (&'a str, u32, &'a [u8]);

/// The folders every initramfs has.
const DIRS: [&str; 7] = ["bin", "dev", "etc", "proc", "sys", "lib", "lib/modules"];

/// Writes an uncompressed newc cpio archive (the kernel accepts it as is) with busybox, the
/// modules under /lib/modules, `extra` and `init` as /init.
pub fn write_initramfs(
    path: &Path,
    busybox: &Path,
    modules: &[(String, Vec<u8>)],
    init: &str,
    extra: &[ExtraFile],
) -> Result<()> {
    let mut w = Cpio::default();
    for d in DIRS {
        w.entry(d, 0o040755, &[], 0);
    }
    // The kernel opens /dev/console before /init runs; devtmpfs is not mounted yet then.
    w.entry("dev/console", 0o020600, &[], (5 << 8) | 1);
    w.entry("bin/busybox", 0o100755, &fs::read(busybox)?, 0);
    for (name, bytes) in modules {
        w.entry(&format!("lib/modules/{name}.ko"), 0o100644, bytes, 0);
    }
    for (name, mode, bytes) in extra {
        w.entry(name, 0o100000 | mode, bytes, 0);
    }
    w.entry("init", 0o100755, init.as_bytes(), 0);
    w.entry("TRAILER!!!", 0, &[], 0);
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, &w.buf)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    /// `rdev` is (major << 8) | minor for device nodes.
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: u32) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            if mode & 0o040000 != 0 { 2 } else { 1 },
            0,
            data.len() as u32,
            0,
            0,
            rdev >> 8,
            rdev & 0xff,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_depends_in_modinfo() {
        let ko = b"\x7fELF...\0license=GPL\0depends=failover,virtio_ring\0name=net_failover\0";
        assert_eq!(modinfo_depends(ko), vec!["failover", "virtio_ring"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut c = Cpio::default();
        c.entry("init", 0o100755, b"abc", 0);
        c.entry("TRAILER!!!", 0, &[], 0);
        assert_eq!(c.buf.len() % 4, 0);
        assert!(c.buf.starts_with(b"070701"));
    }
}
