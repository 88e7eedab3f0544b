//! The JSON schema of every machine-readable output, generated from the Rust types that are
//! serialised (`schemars`, JSON Schema 2020-12). The generated files are checked in as
//! `tests/schemas/NAME.json`; `tests/output_schemas.rs` fails when they differ from what
//! the types give (`UPDATE_SCHEMAS=1 cargo test -p profiler --release --test
//! output_schemas` rewrites them) and validates each command's real output against them.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema};
use serde_json::Value;

/// The outputs that have a schema: (name, command that writes it).
pub const OUTPUTS: [(&str, &str); 7] = [
    (
        "report",
        "run --format json, report --samples F --format json",
    ),
    ("project", "project --format json"),
    ("compare", "compare --format json"),
    ("calibrate", "calibrate --format json"),
    ("calibrate-from", "calibrate --from FILE… --format json"),
    ("simulate", "simulate --format json"),
    ("plan", "plan --format json"),
];

/// The schema of the output named `name` (one of [`OUTPUTS`]).
pub fn schema_of(name: &str) -> Option<Value> {
    Some(match name {
        "report" => generate::<crate::report::Report>(),
        "project" => generate::<crate::projection::project::ProjectReport>(),
        "compare" => generate::<crate::projection::compare::CompareReport>(),
        "calibrate" => generate::<crate::projection::calibrate::CalibrationOutput>(),
        "calibrate-from" => generate::<crate::calibration::export::FromOutput>(),
        "simulate" => generate::<crate::simulation::report::SimReport>(),
        "plan" => generate::<crate::simulation::plan::PlanReport>(),
        _ => return None,
    })
}

fn generate<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .with_transform(RecursiveTransform(every_key_required))
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Marks every property of an object as required unless serde gives it a default: the
/// outputs write every key, `null` where a value is unknown (schemars alone would let an
/// `Option` field be missing).
fn every_key_required(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let Some(props) = obj.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<Value> = props
        .iter()
        .filter(|(_, s)| s.get("default").is_none())
        .map(|(k, _)| Value::String(k.clone()))
        .collect();
    obj.insert("required".into(), Value::Array(required));
}

/// The schema of `name` as the text checked in (pretty JSON, final newline).
pub fn schema_text(name: &str) -> Option<String> {
    let v = schema_of(name)?;
    super::json_text(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_has_a_schema_that_compiles() {
        for (name, _) in OUTPUTS {
            let s = schema_of(name).unwrap();
            assert!(jsonschema::validator_for(&s).is_ok(), "{name}");
            assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        }
        assert!(schema_of("nosuch").is_none());
    }

    #[test]
    fn keys_are_required_unless_they_have_a_default() {
        let s = schema_of("report").unwrap();
        let required = |def: &str| -> Vec<String> {
            s["$defs"][def]["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let top: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // A nullable key is still required; `projected_model` (absent when not set) is not.
        assert!(top.contains(&"output_tokens_per_s") && top.contains(&"host_check"));
        assert!(!top.contains(&"projected_model"));
        assert!(required("Projection").contains(&"cost_usd_per_million_tokens".to_string()));
        assert!(!required("Projection").contains(&"notes".to_string()));
        assert!(!required("Environment").contains(&"matmul_precision".to_string()));
        // Without the key the report is refused.
        let v = jsonschema::validator_for(&s).unwrap();
        let mut r = serde_json::to_value(crate::report::tests::report()).unwrap();
        assert!(v.is_valid(&r));
        r["projections"][0]
            .as_object_mut()
            .unwrap()
            .remove("cost_usd_per_million_tokens");
        assert!(!v.is_valid(&r));
        r["projections"][0]["cost_usd_per_million_tokens"] = Value::Null;
        assert!(v.is_valid(&r));
        r["projections"][0]["ttft_ms"] = Value::Null;
        assert!(
            !v.is_valid(&r),
            "a null latency (NaN written as null) is refused"
        );
    }
}
