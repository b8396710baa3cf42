//! Guest memory behind a trait with checked accesses: device code (the queue engine) never
//! indexes raw memory, so a guest-chosen ring base outside RAM is an error value (which the
//! engine turns into CERROR_ABT), never a panic.

use thiserror::Error;

/// Why a guest-memory access failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Error)]
pub enum MemError {
    /// [gpa, gpa+len) is not (entirely) backed by memory.
    #[error("guest physical range {gpa:#x}+{len:#x} is not backed by memory")]
    Unmapped { gpa: u64, len: u64 },
}

/// Guest-physical memory as the device sees it (DMA).
pub trait GuestMemory {
    /// Read `buf.len()` bytes at `gpa`; all or nothing.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Write `buf` at `gpa`; all or nothing.
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError>;

    /// Read one 16-byte command as two little-endian words.
    #[inline]
    fn read_cmd(&self, gpa: u64) -> Result<[u64; 2], MemError> {
        let mut b = [0u8; 16];
        self.read(gpa, &mut b)?;
        let (lo, hi) = b.split_at(8);
        Ok([
            u64::from_le_bytes(lo.try_into().expect("8 bytes")),
            u64::from_le_bytes(hi.try_into().expect("8 bytes")),
        ])
    }
    /// Write one 16-byte command as two little-endian words.
    fn write_cmd(&mut self, gpa: u64, cmd: [u64; 2]) -> Result<(), MemError> {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&cmd[0].to_le_bytes());
        b[8..].copy_from_slice(&cmd[1].to_le_bytes());
        self.write(gpa, &b)
    }
}

/// Memory with nothing in it: every access fails (a device with no DMA target).
#[derive(Copy, Clone, Debug, Default)]
pub struct NoMemory;

impl GuestMemory for NoMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        Err(MemError::Unmapped {
            gpa,
            len: buf.len() as u64,
        })
    }
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
        Err(MemError::Unmapped {
            gpa,
            len: buf.len() as u64,
        })
    }
}

/// One contiguous RAM block at `base` (e.g. QEMU virt's RAM at 0x4000_0000).
#[derive(Clone, Debug)]
pub struct VecMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl VecMemory {
    /// Zeroed RAM of `size` bytes at `base`.
    pub fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            bytes: vec![0; size],
        }
    }
    /// RAM size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    /// True if [gpa, gpa+len) lies inside this RAM.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        self.range(gpa, len).is_some()
    }
    #[inline]
    fn range(&self, gpa: u64, len: u64) -> Option<std::ops::Range<usize>> {
        let start = gpa.checked_sub(self.base)?;
        let end = start.checked_add(len)?;
        if end > self.bytes.len() as u64 {
            return None;
        }
        Some(start as usize..end as usize)
    }
    /// [`VecMemory::range`] of a `len`-byte access, or the error the access answers.
    #[inline]
    fn checked(&self, gpa: u64, len: usize) -> Result<std::ops::Range<usize>, MemError> {
        let len = len as u64;
        self.range(gpa, len).ok_or(MemError::Unmapped { gpa, len })
    }
}

impl GuestMemory for VecMemory {
    #[inline]
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.checked(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    #[inline]
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
        let r = self.checked(gpa, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        Ok(())
    }
}

impl<T: GuestMemory + ?Sized> GuestMemory for &mut T {
    #[inline]
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
        (**self).write(gpa, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_checked_at_both_ends() {
        let mut m = VecMemory::new(0x4000_0000, 0x100);
        assert!(m.write_cmd(0x4000_00f0, [1, 2]).is_ok());
        assert_eq!(m.read_cmd(0x4000_00f0), Ok([1, 2]));
        assert!(m.read_cmd(0x4000_00f8).is_err()); // crosses the end
        assert!(m.read_cmd(0x3fff_fff8).is_err()); // starts below
        assert!(m.read_cmd(u64::MAX - 4).is_err()); // overflows
        let mut b = [0u8; 0];
        assert!(m.read(0x4000_0100, &mut b).is_ok()); // empty at the end is fine
        assert!(NoMemory.read_cmd(0).is_err());
    }
}
