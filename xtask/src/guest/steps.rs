//! What `cargo xtask guest --inside` runs inside the guest, as data: the step list written to the
//! initramfs as /etc/cmdqv-steps (inside-init.sh runs it), and the guest's record of how each
//! step went (steps.txt) read back into steps.json.
//!
//! A new in-guest check is one more [`Step`] in [`STEPS`]; a step whose subcommand the cmdqv
//! in the guest does not have is reported as skipped, so a step can be listed before cmdqv
//! implements it.

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

/// How the guest's /init runs a step.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `cmdqv ARGS > OUT` in the foreground.
    Run,
    /// `cmdqv ARGS > OUT` in the background around the DMA workload: started, awaited until
    /// ready (`@READY@` in ARGS is replaced by a path the step creates once attached), the
    /// workload runs, then it is stopped (`@STOP@` is replaced by a path /init creates; without
    /// one, SIGINT).
    AroundWorkload,
    /// `cmdqv ARGS > OUT` in the foreground while a sim VMM with hardware-backed VCMDQs (its
    /// page0 a memfd mapped from the simulated host) runs; `@VMM_PID@` in ARGS is its pid.
    BesideSimVmm,
}

impl Mode {
    fn word(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::AroundWorkload => "around-workload",
            Mode::BesideSimVmm => "beside-sim-vmm",
        }
    }
}

/// One in-guest step: `cmdqv ARGS`, stdout to `out` in the results folder.
pub struct Step {
    pub name: &'static str,
    pub out: &'static str,
    pub mode: Mode,
    /// The subcommand first; words without spaces.
    pub args: &'static [&'static str],
}

/// The in-guest steps, in order. `sample` maps the sim VMM's page0 the way the kernel's mmap
/// offsets allow on this page size; `host` is the host-kernel view of the SMMU driver
/// bracketing the workload: skipped until cmdqv has that subcommand.
pub const STEPS: &[Step] = &[
    Step {
        name: "doctor",
        out: "doctor.json",
        mode: Mode::Run,
        args: &["doctor", "--json"],
    },
    Step {
        name: "sim",
        out: "sim.json",
        mode: Mode::Run,
        args: &["sim", "--headless", "--duration", "5s", "--json"],
    },
    Step {
        name: "sample",
        out: "sample.jsonl",
        mode: Mode::BesideSimVmm,
        args: &[
            "sample",
            "--pid",
            "@VMM_PID@",
            "--duration",
            "3s",
            "--rate",
            "2",
            "--json",
        ],
    },
    Step {
        name: "host",
        out: "host.json",
        mode: Mode::AroundWorkload,
        args: &[
            "host",
            "--headless",
            "--json",
            "--ready-file",
            "@READY@",
            "--stop-file",
            "@STOP@",
        ],
    },
];

/// /etc/cmdqv-steps: `NAME OUT MODE SUBCOMMAND ARGS…`, one step per line.
pub fn steps_file(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {}\n",
                s.name,
                s.out,
                s.mode.word(),
                s.args.join(" ")
            )
        })
        .collect()
}

/// How one step went, as the guest recorded it.
#[derive(Debug, PartialEq)]
pub struct StepResult {
    pub name: String,
    /// `ok`, `failed` or `skipped`.
    pub status: String,
    pub exit: Option<i32>,
    pub secs: f64,
    pub note: String,
}

/// Parses steps.txt: `NAME STATUS EXIT T0 T1 NOTE…` per line (EXIT `-` when skipped, T0 and T1
/// seconds since boot).
pub fn parse_results(text: &str) -> Result<Vec<StepResult>> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, status, exit, t0, t1, ..] = f[..] else {
            bail!("steps.txt line {}: too few fields: {line}", n + 1);
        };
        let secs = |t: &str| {
            t.parse::<f64>()
                .with_context(|| format!("time {t} in {line}"))
        };
        if !["ok", "failed", "skipped"].contains(&status) {
            bail!("steps.txt line {}: unknown status {status}", n + 1);
        }
        out.push(StepResult {
            name: name.into(),
            status: status.into(),
            exit: exit.parse().ok(),
            secs: secs(t1)? - secs(t0)?,
            note: f[5..].join(" "),
        });
    }
    Ok(out)
}

/// steps.json: the results as a JSON array.
pub fn results_json(results: &[StepResult]) -> Value {
    Value::Array(
        results
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "status": r.status,
                    "exit": r.exit,
                    "secs": (r.secs * 100.0).round() / 100.0,
                    "note": r.note,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_file_has_one_line_per_step_with_space_free_words() {
        let text = steps_file(STEPS);
        assert_eq!(text.lines().count(), STEPS.len());
        assert!(
            text.starts_with("doctor doctor.json run doctor --json\n"),
            "{text}"
        );
        assert!(text.contains("sim sim.json run sim --headless --duration 5s --json\n"));
        assert!(text.contains("host host.json around-workload host "));
        assert!(text.contains("sample sample.jsonl beside-sim-vmm sample --pid @VMM_PID@ "));
        for s in STEPS {
            assert!(s.args.iter().all(|a| !a.is_empty() && !a.contains(' ')));
            assert!(!s.name.contains(' ') && !s.out.contains(' ') && !s.out.contains('/'));
        }
    }

    #[test]
    fn parses_ok_failed_and_skipped_steps() {
        let text = "doctor ok 0 3.10 5.35 run\nsim failed 1 5.40 12.00 run\n\
                    host skipped - 12.01 12.01 this cmdqv has no 'host' subcommand\n\
                    workload ok 0 12.02 14.52 untraced read /dev/vda (direct)\n";
        let r = parse_results(text).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].status.as_str(), r[0].exit), ("ok", Some(0)));
        assert!((r[0].secs - 2.25).abs() < 1e-9);
        assert_eq!((r[1].status.as_str(), r[1].exit), ("failed", Some(1)));
        assert_eq!((r[2].status.as_str(), r[2].exit), ("skipped", None));
        assert_eq!(r[2].note, "this cmdqv has no 'host' subcommand");
        let j = results_json(&r);
        assert_eq!(j[3]["secs"], 2.5);
        assert_eq!(j[2]["exit"], Value::Null);
    }

    #[test]
    fn rejects_short_lines_bad_times_and_unknown_statuses() {
        assert!(parse_results("doctor ok 0 1.0\n").is_err());
        assert!(parse_results("doctor ok 0 x 2.0 run\n").is_err());
        assert!(parse_results("doctor maybe 0 1.0 2.0 run\n").is_err());
        assert!(parse_results("\n").unwrap().is_empty());
    }
}
