//! The JSON Schema of every JSON record cmdqv prints, generated from the types that print them
//! (schemars), as committed under `schema/` at the top of the repository. A test compares the
//! committed files with [`schemas`] and fails when they differ (`CMDQV_UPDATE_SCHEMA=1`
//! rewrites them); the tests validate the JSON they read from cmdqv against these files.

use cmdqv_core::analysis::Summary;
use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::Value;

use crate::{
    commands::{doctor, sample},
    live::identity::{SCHEMA_VERSION, Stamped},
};

/// The kinds of JSON record, each with its schema file under `schema/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Headless and interval summaries of `sim`, `qemu`, `host`, `record` and `replay`.
    Summary,
    /// One `cmdqv sample --json` interval.
    Sample,
    /// The `cmdqv doctor --json` document.
    Doctor,
}

impl RecordKind {
    pub const ALL: [RecordKind; 3] = [RecordKind::Summary, RecordKind::Sample, RecordKind::Doctor];

    /// The schema's file name under `schema/`.
    pub fn file_name(self) -> &'static str {
        match self {
            RecordKind::Summary => "cmdqv-summary.schema.json",
            RecordKind::Sample => "cmdqv-sample.schema.json",
            RecordKind::Doctor => "cmdqv-doctor.schema.json",
        }
    }

    /// The schema generated from the types.
    pub fn schema(self) -> Value {
        match self {
            RecordKind::Summary => generate::<Stamped<'static, Summary>>(
                self,
                "cmdqv summary: the headless and interval JSON of sim, qemu, host, record and replay",
            ),
            RecordKind::Sample => generate::<Stamped<'static, sample::IntervalReport>>(
                self,
                "cmdqv sample: one interval of a VMM's VINTF page0",
            ),
            RecordKind::Doctor => generate::<Stamped<'static, doctor::Report>>(
                self,
                "cmdqv doctor: what this machine can trace",
            ),
        }
    }
}

/// Every schema with its file name, as it should be committed (pretty JSON, final newline).
pub fn schemas() -> Vec<(&'static str, String)> {
    RecordKind::ALL
        .iter()
        .map(|k| {
            let text = serde_json::to_string_pretty(&k.schema()).unwrap_or_default();
            (k.file_name(), text + "\n")
        })
        .collect()
}

fn generate<T: JsonSchema>(kind: RecordKind, title: &str) -> Value {
    // What cmdqv writes is what the schema describes: optional fields are those it may leave
    // out, not those a reader would default.
    let settings = SchemaSettings::draft2020_12().for_serialize();
    let mut s = settings.into_generator().into_root_schema_for::<T>();
    s.insert("title".into(), title.into());
    s.insert(
        "description".into(),
        format!(
            "{}: records with `schema` = {SCHEMA_VERSION}; generated from cmdqv's types, do not edit",
            kind.file_name()
        )
        .into(),
    );
    s.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_requires_the_identity_fields() {
        for k in RecordKind::ALL {
            let s = k.schema();
            let req: Vec<&str> = s["required"]
                .as_array()
                .unwrap_or_else(|| panic!("{k:?}: no required list"))
                .iter()
                .filter_map(Value::as_str)
                .collect();
            for f in ["schema", "ts", "host"] {
                assert!(req.contains(&f), "{k:?} does not require {f}: {req:?}");
            }
            assert_eq!(s["properties"]["ts"]["format"], "date-time", "{k:?}");
        }
    }
}
