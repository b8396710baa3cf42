//! The VINTF panel's data: each VINTF's LVCMDQ error map and SID table as text.

use cmdqv_core::analysis::VintfSummary;

/// The set bits of a 128-bit error map: `{0,5}`, or `none`.
pub fn err_map_list(map: [u64; 2]) -> String {
    let bits: Vec<String> = (0..128u32)
        .filter(|&i| map[(i / 64) as usize] >> (i % 64) & 1 == 1)
        .map(|i| i.to_string())
        .collect();
    if bits.is_empty() {
        "none".into()
    } else {
        format!("{{{}}}", bits.join(","))
    }
}

/// A VINTF's lines of text that cost something to build.
pub struct VintfText {
    /// `ERR_MAP` as [`err_map_list`] writes it.
    pub err_map: String,
    /// Does any LVCMDQ of this VINTF have an error?
    pub has_errors: bool,
    /// `slot:vSID→pSID` pairs, space-separated; `None` without SID_MATCH entries.
    pub sids: Option<String>,
}

impl VintfText {
    pub fn new(v: &VintfSummary) -> Self {
        let err_map = err_map_list(v.lvcmdq_err_map);
        let sids = (!v.sids.is_empty()).then(|| {
            v.sids
                .iter()
                .map(|(slot, vsid, psid)| format!("{slot}:{vsid:#x}→{psid:#x}"))
                .collect::<Vec<_>>()
                .join(" ")
        });
        Self {
            has_errors: err_map != "none",
            err_map,
            sids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_map_lists_set_bits_of_both_words() {
        assert_eq!(err_map_list([0, 0]), "none");
        assert_eq!(err_map_list([0b101, 1]), "{0,2,64}");
    }
}
