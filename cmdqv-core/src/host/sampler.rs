//! A passthrough sampler for live hosts: with VCMDQ passthrough no guest access traps, so the
//! only way to see a queue move is to look at the VINTF page0 itself. Given a VMM pid, this
//! duplicates the VMM's iommufd (or the simulated host's memfd) with `pidfd_getfd`, maps the
//! VINTF page0 read-only at the offset and length the VMM mapped it, and samples each LVCMDQ's
//! PROD/CONS, giving occupancy and commands/s.
//!
//! Needs ptrace-level access to the VMM (root, or same user with a permissive yama scope).

use std::{
    fs,
    os::fd::{FromRawFd, OwnedFd},
};

use super::{HostError, LVCMDQ_STRIDE, PAGE0_LEN, Page0, page0};

/// Name of the simulated host's page0 memfd (as it appears in /proc/PID/maps and fd links).
pub const SIM_PAGE0_MEMFD: &str = "cmdqv-vintf-page0";

/// A VINTF page0 mapping found in a VMM's address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page0Mapping {
    pub start: u64,
    pub len: u64,
    /// File offset of the mapping (the kernel's mmap cookie for iommufd).
    pub offset: u64,
    /// `/dev/iommu` or `/memfd:cmdqv-vintf-page0 (deleted)`.
    pub path: String,
}

impl Page0Mapping {
    pub fn is_iommufd(&self) -> bool {
        self.path == "/dev/iommu"
    }
}

/// Parses /proc/PID/maps text for VINTF page0 mappings (iommufd or the simulated memfd).
pub fn parse_maps(text: &str) -> Vec<Page0Mapping> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(_perms), Some(off), Some(_dev), Some(_inode)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let path: String = it.collect::<Vec<_>>().join(" ");
        let is_page0 =
            path == "/dev/iommu" || path.starts_with(&format!("/memfd:{SIM_PAGE0_MEMFD}"));
        if !is_page0 {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b), Ok(off)) = (
            u64::from_str_radix(a, 16),
            u64::from_str_radix(b, 16),
            u64::from_str_radix(off, 16),
        ) else {
            continue;
        };
        if b > a {
            out.push(Page0Mapping {
                start: a,
                len: b - a,
                offset: off,
                path,
            });
        }
    }
    out
}

/// Finds the fd number in `pid` whose link matches the mapping's file.
fn find_fd(pid: u32, m: &Page0Mapping) -> Result<i32, HostError> {
    let dir = format!("/proc/{pid}/fd");
    let entries =
        fs::read_dir(&dir).map_err(|e| HostError::Invalid(format!("cannot list {dir}: {e}")))?;
    let want_memfd = !m.is_iommufd();
    for e in entries.flatten() {
        let Ok(link) = fs::read_link(e.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        let hit = if want_memfd {
            link.starts_with(&format!("/memfd:{SIM_PAGE0_MEMFD}"))
        } else {
            link == "/dev/iommu"
        };
        if hit {
            if let Ok(n) = e.file_name().to_string_lossy().parse() {
                return Ok(n);
            }
        }
    }
    Err(HostError::Invalid(format!(
        "process {pid} maps {} but holds no fd for it",
        m.path
    )))
}

/// Duplicates fd `target_fd` of process `pid` into this process.
///
/// Raw `libc::syscall`: nix wraps neither pidfd_open nor pidfd_getfd (and glibc only recently
/// gained wrappers), so the two system calls are made by number.
pub fn pidfd_getfd(pid: u32, target_fd: i32) -> Result<OwnedFd, HostError> {
    // SAFETY: raw syscalls with plain integer arguments; results checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(HostError::Invalid(format!("pidfd_open({pid}) failed: {e}")));
    }
    // SAFETY: pidfd is a fresh fd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    use std::os::fd::AsRawFd as _;
    // SAFETY: as above.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(nix::errno::Errno::EPERM as i32) {
            " (needs ptrace access to the VMM: run as root)"
        } else {
            ""
        };
        return Err(HostError::Invalid(format!(
            "pidfd_getfd({pid}, fd {target_fd}) failed: {e}{hint}"
        )));
    }
    // SAFETY: fresh fd returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// One observation of one LVCMDQ.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LvcmdqSample {
    pub lidx: usize,
    pub prod: u32,
    pub cons: u32,
    /// CONS_INDX.ERR (CERROR code), 0 when healthy.
    pub cerror: u8,
    pub enabled: bool,
    /// Commands consumed since the previous sample (CONS advance, wrap-aware).
    pub consumed: u64,
    /// Entries between CONS and PROD now.
    pub pending: u64,
}

/// Samples PROD/CONS of every LVCMDQ in a VMM's VINTF page0.
pub struct Sampler {
    page: Page0,
    pub mapping: Page0Mapping,
    lvcmdqs: usize,
    /// Known or estimated log2size per queue (page1, which holds it, is not mapped).
    log2size: Vec<Option<u8>>,
    max_seen: Vec<u32>,
    last_cons: Vec<Option<u32>>,
}

const RD_MASK: u32 = crate::regs::cons_indx::RD_MASK;

impl Sampler {
    /// Attaches to the first VINTF page0 mapping of `pid`.
    pub fn attach(pid: u32, lvcmdqs: usize) -> Result<Self, HostError> {
        let maps_path = format!("/proc/{pid}/maps");
        let text = fs::read_to_string(&maps_path)
            .map_err(|e| HostError::Invalid(format!("cannot read {maps_path}: {e}")))?;
        let m = parse_maps(&text).into_iter().next().ok_or_else(|| {
            HostError::Invalid(format!(
                "process {pid} has no VINTF page0 mapped (no /dev/iommu or {SIM_PAGE0_MEMFD} mapping): \
                 is it a VMM with VCMDQ passthrough, and is a VINTF enabled?"
            ))
        })?;
        let fd = find_fd(pid, &m)?;
        let owned = pidfd_getfd(pid, fd)?;
        let file = fs::File::from(owned);
        let len = (m.len as usize).min(PAGE0_LEN.max(m.len as usize));
        let page = Page0::map(&file, m.offset, len as u64, false)?;
        let lvcmdqs = lvcmdqs.clamp(1, PAGE0_LEN / LVCMDQ_STRIDE);
        Ok(Self {
            page,
            mapping: m,
            lvcmdqs,
            log2size: vec![None; lvcmdqs],
            max_seen: vec![0; lvcmdqs],
            last_cons: vec![None; lvcmdqs],
        })
    }

    /// Tells the sampler a queue's ring size (when known from the VMM or a trace).
    pub fn set_log2size(&mut self, lidx: usize, log2size: u8) {
        if let Some(s) = self.log2size.get_mut(lidx) {
            *s = Some(log2size.min(19));
        }
    }

    fn ring_bits(&self, lidx: usize) -> u32 {
        match self.log2size[lidx] {
            Some(n) => n as u32 + 1,
            // Estimate from the largest index+wrap value seen: the wrap bit is the top bit.
            None => (32 - self.max_seen[lidx].leading_zeros()).clamp(1, 20),
        }
    }

    pub fn sample(&mut self) -> Vec<LvcmdqSample> {
        let mut out = Vec::with_capacity(self.lvcmdqs);
        for l in 0..self.lvcmdqs {
            let cons_raw = self.page.read32(l, page0::CONS_INDX);
            let prod = self.page.read32(l, page0::PROD_INDX) & RD_MASK;
            let cons = cons_raw & RD_MASK;
            let enabled = self.page.read32(l, page0::STATUS) & 1 != 0;
            self.max_seen[l] = self.max_seen[l].max(prod).max(cons);
            let bits = self.ring_bits(l);
            let modulus = 1u64 << bits;
            let consumed = match self.last_cons[l] {
                Some(prev) => (cons as u64 + modulus - prev as u64) % modulus,
                None => 0,
            };
            self.last_cons[l] = Some(cons);
            let pending = (prod as u64 + modulus - cons as u64) % modulus;
            out.push(LvcmdqSample {
                lidx: l,
                prod,
                cons,
                cerror: crate::regs::cons_indx::err(cons_raw) as u8,
                enabled,
                consumed,
                pending,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_for_iommufd_and_the_sim_memfd_are_found() {
        let text = "\
7f0000000000-7f0000010000 rw-s 00001000 00:05 123 /dev/iommu
7f0000020000-7f0000030000 rw-s 00000000 00:01 456 /memfd:cmdqv-vintf-page0 (deleted)
7f0000040000-7f0000050000 r--p 00000000 08:01 789 /usr/lib/libc.so.6
garbage line
";
        let m = parse_maps(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0],
            Page0Mapping {
                start: 0x7f00_0000_0000,
                len: 0x10000,
                offset: 0x1000,
                path: "/dev/iommu".into()
            }
        );
        assert!(m[0].is_iommufd());
        assert!(!m[1].is_iommufd());
        assert_eq!(m[1].offset, 0);
    }

    #[test]
    fn attaching_to_a_process_without_page0_explains_why() {
        // Not this process: other tests here map simulated page0s.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let r = Sampler::attach(child.id(), 2);
        let _ = child.kill();
        let _ = child.wait();
        let e = r.err().expect("no page0 here");
        assert!(e.to_string().contains("no VINTF page0"), "{e}");
    }
}
