//! Who and when a JSON record is about: every JSON object cmdqv prints (headless and interval
//! summaries, sample intervals, doctor) is stamped with the schema version, the wall clock, the
//! host name and, per target, the VM and the VMM's pid, so records from a fleet can be merged
//! and told apart. The stamp is added beside the record's own fields (flattened), never
//! renaming or removing one of them.

use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Serialize;

/// Version of the JSON records' shape (the files under `schema/`). Bumped when a field is
/// removed or renamed, or its type or meaning changes; adding an optional field does not bump
/// it (readers must ignore fields they do not know).
pub const SCHEMA_VERSION: u32 = 1;

/// The fields every JSON record starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Identity {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema: u32,
    /// Wall clock when the record was written, RFC 3339 in UTC with nanoseconds
    /// (`2026-12-06T21:30:07.123456789Z`).
    #[schemars(extend("format" = "date-time"))]
    pub ts: String,
    /// This machine's host name.
    pub host: String,
    /// The traced VM: its name (`-name`) or uuid (`-uuid`) from the VMM's command line, the sim
    /// VMM's scenario (`sim:steady-unmap`); absent when there is none (the host kernel, doctor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// pid of the traced VMM; absent when there is none, or when the record has its own `pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// A record with its identity in front.
#[derive(Serialize, JsonSchema)]
pub struct Stamped<'a, T> {
    #[serde(flatten)]
    pub id: Identity,
    #[serde(flatten)]
    pub record: &'a T,
}

/// What is traced, as the identity names it (resolved once, when the target starts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetId {
    pub vm: Option<String>,
    pub pid: Option<u32>,
}

impl TargetId {
    /// The identity to stamp on a record written now.
    pub fn stamp(&self) -> Identity {
        Identity {
            schema: SCHEMA_VERSION,
            ts: rfc3339_utc(SystemTime::now()),
            host: hostname(),
            vm: self.vm.clone(),
            pid: self.pid,
        }
    }

    /// `record` with the stamp in front.
    pub fn stamped<'a, T>(&self, record: &'a T) -> Stamped<'a, T> {
        Stamped {
            id: self.stamp(),
            record,
        }
    }
}

/// This machine's host name (`unknown` if the kernel will not say).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `t` as RFC 3339 in UTC with nanoseconds, e.g. `2026-12-06T21:30:07.123456789Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    // Before 1970 only with a broken clock; such a record says 1970 rather than failing.
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = |s: u64, ns: u32| rfc3339_utc(UNIX_EPOCH + Duration::new(s, ns));
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (a leap day in a century leap year) and 2026-12-06 21:30:07.
        assert_eq!(t(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            t(1_796_592_607, 123_456_789),
            "2026-12-06T21:30:07.123456789Z"
        );
        assert_eq!(t(4_107_542_399, 0), "2100-02-28T23:59:59.000000000Z");
    }

    #[test]
    fn vm_names_come_from_the_vmm_command_line() {
        let q = |s: &str| cmdqv_core::host::discover::vm_from_argv(&argv(s));
        assert_eq!(
            q("qemu-system-aarch64 -M virt -name guest=web-1,debug-threads=on"),
            Some("web-1".into())
        );
        assert_eq!(q("qemu -name db,process=qemu-db"), Some("db".into()));
        assert_eq!(q("qemu -name a,,b"), Some("a,b".into()));
        assert_eq!(q("qemu --name=x"), Some("x".into()));
        let uuid = "6f1f2d5e-1b3a-4c49-9d11-0123456789ab";
        assert_eq!(q(&format!("qemu -uuid {uuid}")), Some(uuid.into()));
        assert_eq!(
            q(&format!("qemu -name guest=n -uuid {uuid}")),
            Some("n".into())
        );
        assert_eq!(q("qemu -M virt"), None);
        assert_eq!(
            q("qemu -name"),
            None,
            "a flag without a value names nothing"
        );
        assert_eq!(
            q("/usr/bin/cmdqv sim-vmm --scenario multi-queue --rate 5"),
            Some("sim:multi-queue".into())
        );
    }

    #[test]
    fn the_stamp_goes_in_front_of_the_record_fields() {
        #[derive(Serialize)]
        struct R {
            pid: u32,
            n: u64,
        }
        let id = TargetId {
            vm: Some("v".into()),
            pid: None,
        };
        let j = serde_json::to_value(id.stamped(&R { pid: 9, n: 3 })).unwrap();
        assert_eq!(j["schema"], SCHEMA_VERSION);
        assert_eq!(j["vm"], "v");
        assert_eq!((j["pid"].as_u64(), j["n"].as_u64()), (Some(9), Some(3)));
        assert!(j["ts"].as_str().unwrap().ends_with('Z'));
        assert!(!j["host"].as_str().unwrap().is_empty());
    }
}
