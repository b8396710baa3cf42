//! Arbitrary BTF blobs (the kernel's, read by `cmdqv host`): parsing and every lookup return a
//! value or a typed error, never a panic or an endless walk; a blob that parses also parses as
//! split BTF on top of itself.
#![no_main]
use cmdqv_core::btf::Btf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
    for name in ["arm_smmu_cmdq_issue_cmdlist", "s", ""] {
        let _ = btf.function_params(name);
        let _ = btf.member_offset(name, &["q", "llq", "max_n_shift"]);
    }
    if let Ok(split) = Btf::parse_split(data, &btf) {
        assert!(split.len() >= btf.len());
    }
});
