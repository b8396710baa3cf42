//! The config file from the command line: `cmdqv config --print-default` prints a file that
//! reads back as the defaults; a wrong key or type stops cmdqv with one line naming the file,
//! the line and the key, and a non-zero exit, before anything starts (replay prints nothing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cmdqv(xdg: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .env("XDG_CONFIG_HOME", xdg)
        .env_remove("NO_COLOR")
        .args(args)
        .output()
        .unwrap()
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cmdqv-config-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("cmdqv")).unwrap();
    d
}

fn trace() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/error-storm.cmdqv")
        .display()
        .to_string()
}

#[test]
fn the_printed_default_is_a_good_config_file() {
    let d = dir("default");
    let out = cmdqv(&d, &["config", "--print-default"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "[ui]",
        "view = ",
        "refresh_hz = 10",
        "theme = ",
        "mouse = true",
        "[queues]",
        "columns = ",
        "[keys]",
        "# quit = ",
    ] {
        assert!(text.contains(key), "{key} missing:\n{text}");
    }
    let file = d.join("cmdqv/config.toml");
    std::fs::write(&file, &text).unwrap();
    let out = cmdqv(&d, &["config", "--check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("config.toml: ok"));
    // And a run reads it without complaint.
    let out = cmdqv(&d, &["replay", &trace(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_wrong_key_or_type_names_file_line_and_key_and_nothing_starts() {
    let d = dir("bad");
    let file = d.join("cmdqv/config.toml");
    for (text, line, key) in [
        ("[ui]\nview = \"log\"\ncolour = \"red\"\n", 3, "ui.colour"),
        ("[ui]\nrefresh_hz = \"fast\"\n", 2, "ui.refresh_hz"),
        ("\n[queues]\ncolumns = [\"name\", 7]\n", 3, "queues.columns"),
        ("[keys]\nquit = [\"Hyper-q\"]\n", 2, "keys.quit"),
        ("[dashboard]\nx = 1\n", 1, "dashboard"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = cmdqv(&d, &["replay", &trace(), "--json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "nothing ran: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let want = format!(
            "cmdqv: config file {}:{line}: key `{key}`: ",
            file.display()
        );
        assert!(
            err.starts_with(&want),
            "{text:?}: {err:?} does not start with {want:?}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one message: {err}");
        // --config FILE names its own file the same way.
        let other = d.join("other.toml");
        std::fs::write(&other, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
            .args(["--config", other.to_str().unwrap(), "config", "--check"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{}:{line}: key `{key}`", other.display())),
            "{err}"
        );
    }
    // A missing --config file is an error too; a missing default file is not.
    let out = cmdqv(
        &d,
        &[
            "--config",
            "/nonexistent/cmdqv.toml",
            "replay",
            &trace(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_file(&file).unwrap();
    let out = cmdqv(&d, &["replay", &trace(), "--json"]);
    assert!(out.status.success());
}
