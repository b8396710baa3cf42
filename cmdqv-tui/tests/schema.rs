//! The JSON Schema under `schema/` is what cmdqv's types generate (a changed record type fails
//! here until `CMDQV_UPDATE_SCHEMA=1 cargo test -p cmdqv-tui --test schema` rewrites the files,
//! to be reviewed and committed), and validation against it can fail: a record missing its
//! identity or with a field of the wrong type is rejected.

mod common;

use cmdqv_tui::schema::{RecordKind, schemas};
use serde_json::{Value, json};

#[test]
fn committed_schemas_equal_the_generated_ones() {
    let update = std::env::var_os("CMDQV_UPDATE_SCHEMA").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (file, generated) in schemas() {
        let kind = RecordKind::ALL
            .into_iter()
            .find(|k| k.file_name() == file)
            .unwrap();
        let path = common::schema_path(kind);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed == generated {
            continue;
        }
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
            eprintln!("rewrote {}", path.display());
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "the committed schema differs from the types: {stale:?}; run \
         CMDQV_UPDATE_SCHEMA=1 cargo test --release -p cmdqv-tui --test schema, review, commit"
    );
}

/// The smallest summary cmdqv prints, with its identity.
fn summary() -> Value {
    json!({
        "schema": 1, "ts": "2026-12-06T21:30:07.123456789Z", "host": "h", "vm": "sim:x",
        "pid": 7, "source": "ebpf", "target": "sim:x (pid 7)", "elapsed_s": 1.0, "events": 0,
        "events_per_s": 0.0, "drops": 0, "probes": [], "queues": []
    })
}

#[test]
fn validation_rejects_what_the_schema_forbids() {
    assert!(common::schema_errors(RecordKind::Summary, &summary()).is_empty());
    for (field, bad) in [
        ("ts", Value::Null),
        ("ts", json!("yesterday")),
        ("schema", json!("1")),
        ("source", json!("guesswork")),
        ("queues", json!([{"name": "vcmdq0"}])),
    ] {
        let mut s = summary();
        s[field] = bad.clone();
        assert!(
            !common::schema_errors(RecordKind::Summary, &s).is_empty(),
            "{field} = {bad} passed"
        );
    }
    for field in ["schema", "ts", "host", "drops"] {
        let mut s = summary();
        s.as_object_mut().unwrap().remove(field);
        assert!(
            !common::schema_errors(RecordKind::Summary, &s).is_empty(),
            "a summary without {field} passed"
        );
    }
}
