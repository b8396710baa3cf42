//! The real host backend: ioctls on /dev/iommu (Linux ≥ 6.17 for vIOMMU of type Tegra241 CMDQV
//! and HW queues). Exercised here only up to the hardware boundary: this machine has no
//! /dev/iommu, so opening fails with a clear error, and every struct layout is pinned by tests.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _},
    os::fd::{AsRawFd, FromRawFd},
    path::{Path, PathBuf},
};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use super::{HostBackend, HostError, HwInfo, Page0, VEvent, VintfAlloc, parse_vevents, uapi::*};

/// iommufd opened on a device path (default `/dev/iommu`).
pub struct IommufdBackend {
    path: PathBuf,
    fd: File,
    veventq: Option<File>,
}

/// The iommufd ioctls. Their request codes are `_IO(';', nr)`, without the size and direction
/// bits of the struct they pass, which nix calls a "bad" ioctl: the code is given as is.
mod sys {
    use super::*;
    nix::ioctl_readwrite_bad!(get_hw_info, IOMMU_GET_HW_INFO, IommuHwInfo);
    nix::ioctl_readwrite_bad!(viommu_alloc, IOMMU_VIOMMU_ALLOC, IommuViommuAlloc);
    nix::ioctl_readwrite_bad!(hw_queue_alloc, IOMMU_HW_QUEUE_ALLOC, IommuHwQueueAlloc);
    nix::ioctl_readwrite_bad!(veventq_alloc, IOMMU_VEVENTQ_ALLOC, IommuVeventqAlloc);
    nix::ioctl_readwrite_bad!(destroy, IOMMU_DESTROY, IommuDestroy);
}

type Ioctl<T> = unsafe fn(std::ffi::c_int, *mut T) -> nix::Result<std::ffi::c_int>;

/// Runs one iommufd ioctl; a failure names the operation and its likely cause.
fn ioctl<T>(fd: &File, op: &'static str, call: Ioctl<T>, arg: &mut T) -> Result<(), HostError> {
    // SAFETY: `arg` is a live #[repr(C)] struct whose first field is its size, laid out as the
    // uapi declares it (sizes and offsets pinned in uapi.rs), and `call` is its ioctl.
    unsafe { call(fd.as_raw_fd(), arg) }
        .map(drop)
        .map_err(|e| HostError::from_ioctl(op, io::Error::from(e)))
}

impl IommufdBackend {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, HostError> {
        let path = path.as_ref().to_path_buf();
        let p = path.display().to_string();
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => HostError::NoDevice { path: p.clone() },
                io::ErrorKind::PermissionDenied => HostError::Permission { path: p.clone() },
                _ => HostError::Ioctl {
                    op: "open",
                    source: e,
                },
            })?;
        Ok(Self {
            path,
            fd,
            veventq: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl HostBackend for IommufdBackend {
    fn kind(&self) -> &'static str {
        "iommufd"
    }

    fn hw_info(&mut self, dev_id: u32) -> Result<HwInfo, HostError> {
        let mut data = IommuHwInfoTegra241Cmdqv::default();
        let mut arg = IommuHwInfo {
            size: size_of::<IommuHwInfo>() as u32,
            flags: IOMMU_HW_INFO_FLAG_INPUT_TYPE,
            dev_id,
            data_len: size_of::<IommuHwInfoTegra241Cmdqv>() as u32,
            data_uptr: &mut data as *mut _ as u64,
            data_type: IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV,
            ..Default::default()
        };
        ioctl(&self.fd, "IOMMU_GET_HW_INFO", sys::get_hw_info, &mut arg)?;
        if arg.data_type != IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV {
            return Err(HostError::NoCmdqv {
                op: "IOMMU_GET_HW_INFO",
            });
        }
        Ok(HwInfo {
            version: data.version,
            log2vcmdqs: data.log2vcmdqs,
            log2vsids: data.log2vsids,
        })
    }

    fn alloc_viommu(&mut self, dev_id: u32, hwpt_id: u32) -> Result<VintfAlloc, HostError> {
        let mut data = IommuViommuTegra241Cmdqv::default();
        let mut arg = IommuViommuAlloc {
            size: size_of::<IommuViommuAlloc>() as u32,
            type_: IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV,
            dev_id,
            hwpt_id,
            // The kernel requires exactly 16 bytes of driver data.
            data_len: size_of::<IommuViommuTegra241Cmdqv>() as u32,
            data_uptr: &mut data as *mut _ as u64,
            ..Default::default()
        };
        ioctl(&self.fd, "IOMMU_VIOMMU_ALLOC", sys::viommu_alloc, &mut arg)?;
        Ok(VintfAlloc {
            viommu_id: arg.out_viommu_id,
            mmap_offset: data.out_vintf_mmap_offset,
            mmap_length: data.out_vintf_mmap_length,
        })
    }

    fn map_page0(&mut self, vintf: &VintfAlloc) -> Result<Page0, HostError> {
        Page0::map(&self.fd, vintf.mmap_offset, vintf.mmap_length, true)
    }

    fn alloc_hw_queue(
        &mut self,
        viommu_id: u32,
        index: u32,
        iova: u64,
        length: u64,
    ) -> Result<u32, HostError> {
        let mut arg = IommuHwQueueAlloc {
            size: size_of::<IommuHwQueueAlloc>() as u32,
            viommu_id,
            type_: IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV,
            index,
            nesting_parent_iova: iova,
            length,
            ..Default::default()
        };
        ioctl(
            &self.fd,
            "IOMMU_HW_QUEUE_ALLOC",
            sys::hw_queue_alloc,
            &mut arg,
        )?;
        Ok(arg.out_hw_queue_id)
    }

    fn destroy(&mut self, id: u32) -> Result<(), HostError> {
        let mut arg = IommuDestroy {
            size: size_of::<IommuDestroy>() as u32,
            id,
        };
        ioctl(&self.fd, "IOMMU_DESTROY", sys::destroy, &mut arg)
    }

    fn alloc_veventq(&mut self, viommu_id: u32, depth: u32) -> Result<u32, HostError> {
        let mut arg = IommuVeventqAlloc {
            size: size_of::<IommuVeventqAlloc>() as u32,
            viommu_id,
            type_: IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV,
            veventq_depth: depth,
            ..Default::default()
        };
        ioctl(
            &self.fd,
            "IOMMU_VEVENTQ_ALLOC",
            sys::veventq_alloc,
            &mut arg,
        )?;
        // SAFETY: the kernel just created this fd for us.
        let f = unsafe { File::from_raw_fd(arg.out_veventq_fd as i32) };
        // read() on the vEVENT fd never blocks (returns 0 when empty), so O_NONBLOCK is only
        // explicit; a failure to set it changes nothing.
        if let Ok(fl) = fcntl(&f, FcntlArg::F_GETFL) {
            let _ = fcntl(
                &f,
                FcntlArg::F_SETFL(OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK),
            );
        }
        self.veventq = Some(f);
        Ok(arg.out_veventq_id)
    }

    fn read_vevents(&mut self) -> Result<Vec<VEvent>, HostError> {
        let Some(f) = self.veventq.as_mut() else {
            return Ok(Vec::new());
        };
        let mut buf = vec![0u8; 24 * 256];
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                return Err(HostError::Ioctl {
                    op: "read(vEVENTQ)",
                    source: e,
                });
            }
        };
        parse_vevents(&buf[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_a_clear_error_not_a_panic() {
        let e = IommufdBackend::open("/nonexistent/iommu")
            .err()
            .expect("must fail");
        assert!(matches!(e, HostError::NoDevice { .. }), "{e}");
        assert!(e.to_string().contains("CONFIG_IOMMUFD"));
    }

    #[test]
    fn ioctls_on_a_non_iommufd_fd_name_the_kernel_as_the_cause() {
        // /dev/null accepts open(O_RDWR) but knows none of the iommufd ioctls: ENOTTY, exactly
        // what an old kernel answers.
        let mut b = IommufdBackend::open("/dev/null").unwrap();
        let e = b.alloc_viommu(1, 2).unwrap_err();
        assert!(
            matches!(
                e,
                HostError::KernelTooOld {
                    op: "IOMMU_VIOMMU_ALLOC"
                }
            ),
            "{e}"
        );
        let e = b.alloc_hw_queue(1, 0, 0x8000_0000, 0x1000).unwrap_err();
        assert!(
            matches!(
                e,
                HostError::KernelTooOld {
                    op: "IOMMU_HW_QUEUE_ALLOC"
                }
            ),
            "{e}"
        );
        assert!(matches!(b.hw_info(1), Err(HostError::KernelTooOld { .. })));
        assert!(matches!(b.destroy(7), Err(HostError::KernelTooOld { .. })));
        assert!(matches!(
            b.alloc_veventq(1, 64),
            Err(HostError::KernelTooOld { .. })
        ));
        assert!(b.read_vevents().unwrap().is_empty());
    }

    #[test]
    fn eacces_and_eperm_say_what_access_is_missing() {
        for errno in [libc::EACCES, libc::EPERM] {
            let e =
                HostError::from_ioctl("IOMMU_HW_QUEUE_ALLOC", io::Error::from_raw_os_error(errno));
            assert!(matches!(e, HostError::Denied { .. }), "{e}");
            assert_eq!(e.errno(), Some(errno));
            assert!(e.to_string().contains("permission denied"), "{e}");
        }
        // Opening a device node the user may not open: as root every open succeeds, so this
        // half only runs unprivileged.
        if !nix::unistd::geteuid().is_root() {
            let dir = std::env::temp_dir().join(format!("cmdqv-eacces-{}", std::process::id()));
            std::fs::write(&dir, b"").unwrap();
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o000))
                .unwrap();
            let e = IommufdBackend::open(&dir).err().expect("mode 000");
            let _ = std::fs::remove_file(&dir);
            assert!(matches!(e, HostError::Permission { .. }), "{e}");
            assert_eq!(e.errno(), Some(libc::EACCES));
        }
    }

    #[test]
    fn eopnotsupp_names_a_missing_cmdqv() {
        let e = HostError::from_ioctl(
            "IOMMU_VIOMMU_ALLOC",
            io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        );
        assert!(e.to_string().contains("no Tegra241 CMDQV"));
    }
}
