//! The JSON the guest's own cmdqv wrote (doctor.json, sim.json, sample.jsonl, host.json)
//! against the schema committed under `schema/`, as the host's tests check the JSON they read:
//! the aarch64 build inside the arm64 guest must print the records the schema publishes.

use serde_json::Value;

use super::checks::Check;
use crate::sh::root;

/// Every record of `text` (one JSON document, or one per line) against `schema/<schema_file>`.
pub fn matches_schema(name: &'static str, schema_file: &str, text: &str) -> Check {
    let (ok, detail) = match validate_all(schema_file, text) {
        Ok(n) => (
            true,
            format!("{n} records valid against schema/{schema_file}"),
        ),
        Err(e) => (false, e),
    };
    Check { name, ok, detail }
}

fn validate_all(schema_file: &str, text: &str) -> Result<usize, String> {
    let path = root().join("schema").join(schema_file);
    let schema: Value = std::fs::read_to_string(&path)
        .map_err(|e| format!("reading {}: {e}", path.display()))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{schema_file}: {e}")))?;
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| format!("{schema_file} is not a valid schema: {e}"))?;
    let records: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(one) => vec![one],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
            .collect::<Result<_, _>>()?,
    };
    if records.is_empty() {
        return Err("no JSON record".into());
    }
    for (i, r) in records.iter().enumerate() {
        let errors: Vec<String> = v
            .iter_errors(r)
            .take(3)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        if !errors.is_empty() {
            return Err(format!(
                "record {} does not match schema/{schema_file}: {}",
                i + 1,
                errors.join("; ")
            ));
        }
    }
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_checked_one_per_line_or_as_one_document() {
        let good = r#"{"schema":1,"ts":"2026-12-06T21:30:07.1Z","host":"h","vm":"v","pid":3,"t_s":1.0,"interval_s":0.1,"queues":[]}"#;
        let c = matches_schema(
            "sample",
            "cmdqv-sample.schema.json",
            &format!("{good}\n{good}\n"),
        );
        assert!(c.ok, "{}", c.detail);
        assert!(c.detail.starts_with("2 records"), "{}", c.detail);
        let old = r#"{"pid":3,"t_s":1.0,"interval_s":0.1,"queues":[]}"#;
        let c = matches_schema("sample", "cmdqv-sample.schema.json", old);
        assert!(!c.ok && c.detail.contains("schema"), "{}", c.detail);
        assert!(!matches_schema("sample", "cmdqv-sample.schema.json", "").ok);
    }
}
