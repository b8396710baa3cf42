//! The KVM guest engine of the sim VMM: after the VMM brings the device up (as Linux does), the
//! guest's hot path runs as guest code in real vCPUs. The SMMU's and the CMDQV's registers are
//! MMIO that no memslot covers, so every trapped doorbell and CONS poll is a real VM exit handled
//! by the VMM's device models; a hardware-backed VINTF page0 (the simulated host's memfd page)
//! is a memslot, so the direct path's PROD stores and CONS loads reach it with no exit, and the
//! simulated host's hardware thread consumes. x86_64 guests (run here) and aarch64 guests
//! (built and unit-tested here, run on aarch64 hosts).

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod arch;
pub mod breakdown;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod compare;
pub mod exits;
pub mod guest;
pub mod guest_a64;
pub mod layout;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod run;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod vcpu;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub use run::{KvmEngine, KvmRun, PathRun};
