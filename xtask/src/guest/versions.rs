//! The QEMU and guest-kernel versions `cargo xtask guest` can fetch, and the Debian suites
//! they come from.

use anyhow::{Result, bail};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QemuVersion {
    /// bookworm's qemu-system-arm 7.2.
    V7_2,
    /// bookworm-backports' qemu-system-arm 10.0.2.
    V10_0,
}

impl QemuVersion {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "7.2" | "7" => Ok(Self::V7_2),
            "10.0" | "10" | "10.0.2" => Ok(Self::V10_0),
            _ => bail!("unknown --qemu {s}: choose 7.2 (bookworm) or 10.0 (bookworm-backports)"),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::V7_2 => "7.2",
            Self::V10_0 => "10.0",
        }
    }

    pub fn suite(self) -> &'static str {
        match self {
            Self::V7_2 => "bookworm",
            Self::V10_0 => "bookworm-backports",
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KernelVersion {
    /// linux-image-6.12.*-arm64 from bookworm-backports.
    V6_12,
    /// bookworm's (security-updated) linux-image-6.1.0-*-arm64.
    V6_1,
}

impl KernelVersion {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "6.12" => Ok(Self::V6_12),
            "6.1" => Ok(Self::V6_1),
            _ => bail!("unknown --kernel {s}: choose 6.12 (bookworm-backports) or 6.1 (bookworm)"),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::V6_12 => "6.12",
            Self::V6_1 => "6.1",
        }
    }

    /// The meta package that names the newest image of the series in its suite.
    pub fn meta_package(self) -> &'static str {
        match self {
            Self::V6_12 => "linux-image-arm64/bookworm-backports",
            Self::V6_1 => "linux-image-arm64/bookworm-security",
        }
    }
}
