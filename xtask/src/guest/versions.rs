//! The QEMU and guest-kernel versions `cargo xtask guest` can fetch, and the Debian suites
//! they come from.

use anyhow::{Result, bail};

use super::apt::Release;

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
    /// trixie's linux-image-6.12.*-arm64-16k: 16 KiB pages.
    V6_12_16k,
}

impl KernelVersion {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "6.12" => Ok(Self::V6_12),
            "6.1" => Ok(Self::V6_1),
            "16k" | "6.12-16k" => Ok(Self::V6_12_16k),
            _ => bail!(
                "unknown --kernel {s}: choose 6.12 (bookworm-backports), 6.1 (bookworm) or 16k \
                 (trixie's 6.12 with 16 KiB pages)"
            ),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::V6_12 => "6.12",
            Self::V6_1 => "6.1",
            Self::V6_12_16k => "16k",
        }
    }

    /// The Debian release whose archive has it.
    pub fn release(self) -> Release {
        match self {
            Self::V6_12 | Self::V6_1 => Release::Bookworm,
            Self::V6_12_16k => Release::Trixie,
        }
    }

    /// The meta package that names the newest image of the series in its suite.
    pub fn meta_package(self) -> &'static str {
        match self {
            Self::V6_12 => "linux-image-arm64/bookworm-backports",
            Self::V6_1 => "linux-image-arm64/bookworm-security",
            Self::V6_12_16k => "linux-image-arm64-16k/trixie",
        }
    }

    /// How the image package's name ends (the flavour).
    pub fn image_suffix(self) -> &'static str {
        match self {
            Self::V6_12 | Self::V6_1 => "-arm64",
            Self::V6_12_16k => "-arm64-16k",
        }
    }

    /// The page size the kernel is built for, in bytes.
    pub fn page_size(self) -> u64 {
        match self {
            Self::V6_12 | Self::V6_1 => 4096,
            Self::V6_12_16k => 16384,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_parse_to_their_flavour_release_and_page_size() {
        let k = KernelVersion::parse("16k").unwrap();
        assert_eq!((k.label(), k.page_size()), ("16k", 16384));
        assert_eq!(k.release(), Release::Trixie);
        assert!(k.meta_package().ends_with("-16k/trixie"));
        let k = KernelVersion::parse("6.12").unwrap();
        assert_eq!((k.image_suffix(), k.page_size()), ("-arm64", 4096));
        assert!(KernelVersion::parse("64k").is_err());
    }
}
