//! Starting a QEMU paused and letting it run: `-S` plus a private QMP socket on the command line,
//! then `qmp_capabilities` and `cont` once the probes are attached, so not one command of the
//! boot is missed.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// How long QEMU gets to create its QMP socket and to answer on it.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// Spawns `cmd` with `-S` (guest paused) and a private QMP socket appended; returns the child
/// and the socket path for [`qmp_cont`].
pub fn spawn_paused(cmd: &mut Command) -> anyhow::Result<(Child, PathBuf)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let qmp = std::env::temp_dir().join(format!(
        "cmdqv-qmp-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&qmp);
    cmd.arg("-S")
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
    Ok((child, qmp))
}

/// Lets a QEMU started by [`spawn_paused`] run: `qmp_capabilities`, then `cont` (waits up to
/// 10 s for QEMU to create the socket).
pub fn qmp_cont(path: &Path, child: &mut Child) -> anyhow::Result<()> {
    let stream = connect(path, child)?;
    stream.set_read_timeout(Some(QMP_TIMEOUT))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).context("reading QMP greeting")?;
    for cmd in ["qmp_capabilities", "cont"] {
        writeln!(w, "{{\"execute\":\"{cmd}\"}}")?;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                bail!("QMP closed during {cmd}");
            }
            if line.contains("\"return\"") {
                break;
            }
            if line.contains("\"error\"") {
                bail!("QMP {cmd} failed: {}", line.trim());
            }
        }
    }
    Ok(())
}

/// Connects to the QMP socket once QEMU has created it.
fn connect(path: &Path, child: &mut Child) -> anyhow::Result<UnixStream> {
    let t = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) => {
                if let Some(st) = child.try_wait()? {
                    bail!("QEMU exited with {st} before it could be resumed");
                }
                if t.elapsed() > QMP_TIMEOUT {
                    bail!("QEMU's QMP socket {} did not appear: {e}", path.display());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// A program name as `Command` would run it: a path as is, a bare name from PATH.
pub fn resolve_program(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.exists().then(|| p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}
