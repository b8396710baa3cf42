//! Userspace half of the mmap/munmap probes: keep only what concerns iommufd.
//!
//! The kernel side reports every fd-backed mmap of the traced process (and, with a pid filter,
//! every munmap), because it cannot tell an iommufd fd from any other file cheaply. This filter
//! keeps an mmap when its fd is an iommufd, known from either
//!
//! - a successful iommufd ioctl (`';'` type byte, `ret >= 0`) on that (pid, fd) seen earlier in
//!   the stream, or
//! - `/proc/PID/fd/FD` linking to `/dev/iommu` when the record is read,
//!
//! and keeps a munmap when it overlaps a mapping it kept. Limits, by design: an fd closed
//! before its mmap record is read and never used for an ioctl is missed; a learnt fd number
//! stays "iommufd" for the run even if it is closed and reused (VMMs keep their iommufd open).
//! Records that are not mmap/munmap pass untouched.

use std::collections::HashSet;

use cmdqv_core::{event::Payload, probe_abi};
use cmdqv_ebpf_common::{EventKind, IOMMUFD_TYPE};

/// Whether `/proc/PID/fd/FD` is an iommufd (a test can substitute its own answer).
pub type IsIommufdFn = fn(pid: u32, fd: i32) -> bool;

/// The real check: the fd's link names `/dev/iommu`.
pub fn proc_fd_is_iommufd(pid: u32, fd: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.as_os_str() == "/dev/iommu")
        .unwrap_or(false)
}

/// Most mappings remembered for munmap matching (a VMM maps a handful of iommufd pages).
const MAX_MAPPINGS: usize = 4096;

/// See the module documentation.
pub struct IommufdFds {
    known: HashSet<(u32, i32)>,
    /// Kept mappings: (pid, start, len).
    mappings: Vec<(u32, u64, u64)>,
    is_iommufd: IsIommufdFn,
    dropped: u64,
}

impl Default for IommufdFds {
    fn default() -> Self {
        Self::new(proc_fd_is_iommufd)
    }
}

impl IommufdFds {
    pub fn new(is_iommufd: IsIommufdFn) -> Self {
        Self {
            known: HashSet::new(),
            mappings: Vec::new(),
            is_iommufd,
            dropped: 0,
        }
    }

    /// Records left out so far (not iommufd: not an event loss).
    pub fn filtered(&self) -> u64 {
        self.dropped
    }

    /// Whether to deliver this raw ring-buffer record. Only ioctl and mmap records are decoded.
    pub fn keep_raw(&mut self, rec: &[u8]) -> bool {
        let kind = rec
            .get(..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .unwrap_or(0);
        if kind != EventKind::Ioctl as u16 && kind != EventKind::Mmap as u16 {
            return true;
        }
        match probe_abi::decode(rec) {
            Ok(ev) => self.keep(ev.pid, &ev.payload),
            Err(_) => true, // the collector counts it as undecodable
        }
    }

    /// Whether to deliver an event of process `pid`.
    pub fn keep(&mut self, pid: u32, p: &Payload) -> bool {
        let keep = match *p {
            Payload::Ioctl { fd, cmd, ret, .. } => {
                if (cmd >> 8) & 0xff == IOMMUFD_TYPE && ret >= 0 && fd >= 0 {
                    self.known.insert((pid, fd));
                }
                true
            }
            Payload::Mmap {
                fd,
                addr,
                len,
                ret,
                map: true,
                ..
            } => {
                let iommufd = fd >= 0
                    && (self.known.contains(&(pid, fd)) || {
                        let yes = (self.is_iommufd)(pid, fd);
                        if yes {
                            self.known.insert((pid, fd));
                        }
                        yes
                    });
                if iommufd && ret >= 0 && self.mappings.len() < MAX_MAPPINGS {
                    self.mappings.push((pid, addr, len));
                }
                iommufd
            }
            Payload::Mmap {
                addr,
                len,
                map: false,
                ..
            } => {
                let end = addr.saturating_add(len);
                let before = self.mappings.len();
                let overlaps = |&(p, s, l): &(u32, u64, u64)| {
                    p == pid && s < end && addr < s.saturating_add(l)
                };
                let hit = self.mappings.iter().any(overlaps);
                // A munmap covering a whole mapping ends it; a partial one leaves it known.
                self.mappings
                    .retain(|&(p, s, l)| !(p == pid && addr <= s && s.saturating_add(l) <= end));
                hit || self.mappings.len() != before
            }
            _ => true,
        };
        if !keep {
            self.dropped += 1;
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ioctl(fd: i32, cmd: u32, ret: i64) -> Payload {
        Payload::Ioctl {
            fd,
            cmd,
            ret,
            duration_ns: 1,
            arg_len: 0,
            arg: [0; 48],
        }
    }
    fn mmap(fd: i32, addr: u64, len: u64) -> Payload {
        Payload::Mmap {
            fd,
            addr,
            len,
            offset: 0,
            ret: addr as i64,
            map: true,
        }
    }
    fn munmap(addr: u64, len: u64) -> Payload {
        Payload::Mmap {
            fd: -1,
            addr,
            len,
            offset: 0,
            ret: 0,
            map: false,
        }
    }

    #[test]
    fn keeps_mmaps_of_fds_learnt_from_successful_iommufd_ioctls_only() {
        let mut f = IommufdFds::new(|_, _| false);
        assert!(f.keep(7, &ioctl(5, 0x3b90, -25)), "ioctls always pass");
        assert!(
            !f.keep(7, &mmap(5, 0x1000, 0x1000)),
            "a failed ioctl teaches nothing"
        );
        assert!(f.keep(7, &ioctl(5, 0x3b94, 0)));
        assert!(f.keep(7, &ioctl(6, 0x5401, 0)));
        assert!(
            !f.keep(7, &mmap(6, 0x2000, 0x1000)),
            "a TCGETS fd is not iommufd"
        );
        assert!(f.keep(7, &mmap(5, 0x3000, 0x1000)));
        assert!(
            !f.keep(8, &mmap(5, 0x3000, 0x1000)),
            "fd 5 of another process"
        );
        assert_eq!(f.filtered(), 3);
    }

    #[test]
    fn asks_proc_for_unknown_fds_and_remembers_the_answer() {
        let mut f = IommufdFds::new(|pid, fd| pid == 9 && fd == 11);
        assert!(f.keep(9, &mmap(11, 0x1000, 0x1000)));
        assert!(!f.keep(9, &mmap(12, 0x2000, 0x1000)));
        assert!(f.known.contains(&(9, 11)));
    }

    #[test]
    fn keeps_munmaps_that_overlap_a_kept_mapping_and_forgets_whole_unmaps() {
        let mut f = IommufdFds::new(|_, fd| fd == 3);
        assert!(f.keep(1, &mmap(3, 0x10000, 0x2000)));
        assert!(!f.keep(1, &mmap(4, 0x40000, 0x1000)));
        assert!(
            !f.keep(1, &munmap(0x40000, 0x1000)),
            "not an iommufd mapping"
        );
        assert!(f.keep(1, &munmap(0x11000, 0x1000)), "partial unmap");
        assert!(f.keep(1, &munmap(0x10000, 0x2000)), "whole unmap");
        assert!(!f.keep(1, &munmap(0x10000, 0x2000)), "already gone");
        assert!(!f.keep(2, &munmap(0x10000, 0x2000)), "other process");
    }

    #[test]
    fn raw_records_of_other_kinds_pass_without_decoding() {
        let mut f = IommufdFds::new(|_, _| false);
        assert!(f.keep_raw(&[2, 0, 1, 0]), "an MMIO record, even truncated");
        let ev = cmdqv_core::event::Event {
            ts_ns: 1,
            pid: 3,
            tid: 3,
            cpu: 0,
            payload: mmap(4, 0x1000, 0x1000),
        };
        assert!(!f.keep_raw(&probe_abi::encode(&ev).unwrap()));
    }
}
