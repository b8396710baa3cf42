//! Shared by the integration tests that read cmdqv's JSON: every record is checked against the
//! schema committed under `schema/` (the published one, not one generated on the fly), so a
//! field that drifts from its schema fails the test that saw it.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::PathBuf;

use cmdqv_tui::schema::RecordKind;
use serde_json::Value;

/// The committed schema file of `kind`.
pub fn schema_path(kind: RecordKind) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../schema")
        .join(kind.file_name())
}

/// The errors of `record` against the committed schema of `kind` (empty: valid).
pub fn schema_errors(kind: RecordKind, record: &Value) -> Vec<String> {
    let path = schema_path(kind);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()));
    v.iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Panics, naming every error, unless `record` is valid against the schema of `kind`.
pub fn assert_schema(kind: RecordKind, record: &Value) {
    let errors = schema_errors(kind, record);
    assert!(
        errors.is_empty(),
        "{:?} record does not match {}:\n  {}\nrecord: {record}",
        kind,
        kind.file_name(),
        errors.join("\n  ")
    );
}

/// A headless or interval summary (sim, qemu, host, record, replay).
pub fn assert_summary(record: &Value) {
    assert_schema(RecordKind::Summary, record);
}
