//! Guest RAM of the sim VMM: one shared anonymous mapping that vCPU threads store commands into
//! while the device model (under its lock) and the simulated host's hardware thread read them —
//! exactly the concurrency real DMA has. Accesses are bounds-checked and done with volatile word
//! copies, so a racing store is a stale value, never undefined behaviour in our code.

use crate::mem::{GuestMemory, MemError};

pub struct Ram {
    base: u64,
    len: usize,
    map: memmap2::MmapRaw,
}

// SAFETY: all access goes through bounds-checked volatile copies below.
unsafe impl Sync for Ram {}
unsafe impl Send for Ram {}

impl Ram {
    pub fn new(base: u64, len: usize) -> std::io::Result<Self> {
        let map = memmap2::MmapOptions::new().len(len).map_anon()?;
        Ok(Self {
            base,
            len,
            map: memmap2::MmapRaw::from(map),
        })
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mapping's host address, for a VMM that maps guest RAM into a KVM memslot.
    pub fn host_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn range(&self, gpa: u64, len: usize) -> Result<usize, MemError> {
        let err = MemError::Unmapped {
            gpa,
            len: len as u64,
        };
        let off = gpa.checked_sub(self.base).ok_or(err)?;
        let end = off.checked_add(len as u64).ok_or(err)?;
        if end > self.len as u64 {
            return Err(err);
        }
        Ok(off as usize)
    }

    /// Stores bytes (a VMM loading guest code).
    pub fn store_bytes(&self, gpa: u64, bytes: &[u8]) -> Result<(), MemError> {
        let off = self.range(gpa, bytes.len())?;
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: off + i < len (checked by range()).
            unsafe { std::ptr::write_volatile(self.map.as_mut_ptr().add(off + i), *b) };
        }
        Ok(())
    }

    /// Stores one command (vCPU side).
    pub fn store_cmd(&self, gpa: u64, cmd: [u64; 2]) -> Result<(), MemError> {
        let off = self.range(gpa, 16)?;
        if off % 8 != 0 {
            return Err(MemError::Unmapped { gpa, len: 16 });
        }
        // SAFETY: in bounds and 8-byte aligned (checked above).
        unsafe {
            let p = self.map.as_mut_ptr().add(off).cast::<u64>();
            std::ptr::write_volatile(p, cmd[0].to_le());
            std::ptr::write_volatile(p.add(1), cmd[1].to_le());
        }
        Ok(())
    }
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = self.range(gpa, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: off + i < len (checked by range()).
            *b = unsafe { std::ptr::read_volatile(self.map.as_ptr().add(off + i)) };
        }
        Ok(())
    }

    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
        let off = self.range(gpa, buf.len())?;
        for (i, b) in buf.iter().enumerate() {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(self.map.as_mut_ptr().add(off + i), *b) };
        }
        Ok(())
    }

    fn read_cmd(&self, gpa: u64) -> Result<[u64; 2], MemError> {
        let off = self.range(gpa, 16)?;
        if off % 8 != 0 {
            let mut b = [0u8; 16];
            self.read(gpa, &mut b)?;
            return Ok([
                u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
            ]);
        }
        // SAFETY: in bounds and aligned.
        unsafe {
            let p = self.map.as_ptr().add(off).cast::<u64>();
            Ok([
                u64::from_le(std::ptr::read_volatile(p)),
                u64::from_le(std::ptr::read_volatile(p.add(1))),
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_outside_ram_are_errors() {
        let r = Ram::new(0x4000_0000, 0x1000).unwrap();
        r.store_cmd(0x4000_0010, [1, 2]).unwrap();
        assert_eq!(r.read_cmd(0x4000_0010).unwrap(), [1, 2]);
        assert!(r.read_cmd(0x4000_0ff8).is_err());
        assert!(r.read_cmd(0x3fff_fff0).is_err());
        assert!(r.store_cmd(u64::MAX - 4, [0, 0]).is_err());
        let mut b = [0u8; 4];
        assert!(r.read(0x4000_0000 + 0x1000, &mut b).is_err());
    }
}
