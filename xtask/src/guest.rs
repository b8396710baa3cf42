//! `cargo xtask guest`: a real arm64 Linux guest on QEMU's SMMUv3 (in progress).
