//! Reads the ustar archive the guest writes to its raw output disk (busybox `tar -cf /dev/vdX`):
//! regular files only, each header's checksum verified, up to the first all-zero block.

use anyhow::{Context as _, Result, bail};

const BLOCK: usize = 512;

/// The regular files of the archive at the start of `disk`: (name without a leading `./`,
/// contents). Directories are skipped; a name with a folder in it or `..` is an error (the guest
/// writes a flat folder).
pub fn read_tar(disk: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let mut at = 0;
    while let Some(h) = disk.get(at..at + BLOCK) {
        if h.iter().all(|&b| b == 0) {
            return Ok(files);
        }
        verify_checksum(h).with_context(|| format!("tar header at byte {at}"))?;
        let size = octal(&h[124..136]).with_context(|| format!("size field at byte {at}"))?;
        let name = header_name(h);
        let data_at = at + BLOCK;
        let data = disk
            .get(data_at..data_at + size as usize)
            .with_context(|| format!("{name}: {size} bytes run past the end of the disk"))?;
        match h[156] {
            b'0' | 0 => {
                let flat = name.trim_start_matches("./");
                if flat.is_empty() || flat.contains('/') || flat == ".." {
                    bail!("unexpected path {name:?} in the guest's archive");
                }
                files.push((flat.to_string(), data.to_vec()));
            }
            b'5' => {}
            t => bail!("{name}: unexpected tar entry type {:?}", t as char),
        }
        at = data_at + (size as usize).div_ceil(BLOCK) * BLOCK;
    }
    bail!("the archive has no end-of-archive block")
}

/// `prefix/name` (ustar) or `name`.
fn header_name(h: &[u8]) -> String {
    let field = |r: std::ops::Range<usize>| {
        let f = &h[r];
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let (name, prefix) = (field(0..100), field(345..500));
    if &h[257..262] == b"ustar" && !prefix.is_empty() {
        format!("{prefix}/{name}")
    } else {
        name
    }
}

/// An octal number field, NUL- or space-terminated.
fn octal(f: &[u8]) -> Result<u64> {
    let s = std::str::from_utf8(f)?.trim_matches(|c| c == '\0' || c == ' ');
    Ok(u64::from_str_radix(s, 8)?)
}

fn verify_checksum(h: &[u8]) -> Result<()> {
    let want = octal(&h[148..156])?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { b' ' } else { b } as u64)
        .sum();
    if sum != want {
        bail!("checksum {sum} does not match the recorded {want}: not a tar header");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One ustar header block as tar writes it.
    fn header(name: &str, size: usize, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn archive(entries: &[(&str, &[u8], u8)]) -> Vec<u8> {
        let mut a = Vec::new();
        for (name, data, kind) in entries {
            a.extend(header(name, data.len(), *kind));
            a.extend_from_slice(data);
            a.resize(a.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        a.resize(a.len() + 4 * BLOCK, 0); // end blocks, then the rest of the zeroed disk
        a
    }

    #[test]
    fn reads_files_and_skips_folders() {
        let big = vec![b'x'; 1300];
        let a = archive(&[
            ("./", b"", b'5'),
            ("./doctor.json", b"{\"a\":1}\n", b'0'),
            ("./sim.json", &big, b'0'),
            ("./empty.txt", b"", b'0'),
        ]);
        let files = read_tar(&a).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["doctor.json", "sim.json", "empty.txt"]);
        assert_eq!(files[0].1, b"{\"a\":1}\n");
        assert_eq!(files[1].1, big);
    }

    #[test]
    fn a_blank_disk_holds_no_files_and_garbage_is_an_error() {
        assert!(read_tar(&vec![0u8; 8 * BLOCK]).unwrap().is_empty());
        let mut a = archive(&[("./x.json", b"{}", b'0')]);
        a[10] ^= 1; // a changed name byte breaks the checksum
        assert!(read_tar(&a).is_err());
        let cut = archive(&[("./x.json", &[b'y'; 2000], b'0')]);
        assert!(read_tar(&cut[..1024]).is_err(), "truncated contents");
        assert!(read_tar(&archive(&[("../etc/passwd", b"x", b'0')])).is_err());
        assert!(read_tar(&archive(&[("./a/b", b"x", b'0')])).is_err());
    }
}
