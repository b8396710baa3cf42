//! VINTF state as trapped MMIO shows it (configuration, SID tables, error maps), read through
//! the register map's field definitions.

use crate::analysis::summary::VintfSummary;
use crate::regs::{self, RegRef, VintfReg, sid_match, sid_replace, vintf_config, vintf_status};

/// VINTFs whose state is derived from MMIO (the architectural maximum).
pub const MAX_VINTFS_TRACKED: usize = 64;

/// Apply one CMDQV MMIO access (`offset` into the device) to the VINTF panel's state.
pub fn track_vintf_mmio(vintfs: &mut Vec<VintfSummary>, offset: u64, value: u64, write: bool) {
    let Some(RegRef::Vintf { vintf, reg }) = regs::decode(offset) else {
        return;
    };
    let v = vintf as usize;
    if v >= MAX_VINTFS_TRACKED {
        return;
    }
    if vintfs.len() <= v {
        vintfs.resize_with(v + 1, VintfSummary::default);
        for (i, x) in vintfs.iter_mut().enumerate() {
            x.index = i as u32;
        }
    }
    let vs = &mut vintfs[v];
    let value32 = value as u32;
    match reg {
        VintfReg::Config => {
            vs.vmid = vintf_config::vmid(value32);
            if write {
                vs.enabled = value32 & vintf_config::ENABLE != 0;
            }
            // What the guest reads back is what the VMM lets it see (HYP_OWN masked).
            vs.hyp_own = value32 & vintf_config::HYP_OWN != 0;
        }
        VintfReg::Status if !write => vs.enabled = value32 & vintf_status::ENABLE_OK != 0,
        VintfReg::SidMatch(s) if write => {
            vs.sids.retain(|e| e.0 != s as u32);
            if value32 & sid_match::ENABLE != 0 {
                let vsid = value32 >> sid_match::VSID_SHIFT & sid_match::VSID_MASK;
                vs.sids.push((s as u32, vsid, 0));
                vs.sids.sort_unstable();
            }
        }
        VintfReg::SidReplace(s) if write => {
            if let Some(e) = vs.sids.iter_mut().find(|e| e.0 == s as u32) {
                e.2 = value32 & sid_replace::PSID_MASK;
            }
        }
        VintfReg::LvcmdqErrMap(w) if !write => read_err_map(&mut vs.lvcmdq_err_map, w, value),
        _ => {}
    }
}

/// LVCMDQ_ERR_MAP word `w` (32 bits each) read as `value`, into the map's two 64-bit words.
fn read_err_map(map: &mut [u64; 2], w: u8, value: u64) {
    let word = (w / 2) as usize;
    let shift = 32 * (w % 2) as u32;
    if let Some(m) = map.get_mut(word) {
        *m = (*m & !(0xffff_ffffu64 << shift)) | ((value & 0xffff_ffff) << shift);
        if w.is_multiple_of(2) && value >> 32 != 0 {
            // A 64-bit read covers the next word too.
            *m = (*m & 0xffff_ffff) | (value & !0xffff_ffff);
        }
    }
}
