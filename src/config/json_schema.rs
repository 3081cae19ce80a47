//! The JSON Schema of the configuration file, generated from the types that parse it, so it
//! cannot drift: `proxyfn schema` prints it, `proxyfn.schema.json` is that output checked in
//! (TOML editors complete and validate keys through the `#:schema` line of proxyfn.toml), and
//! `proxyfn check` uses it to find every structural problem of a file in one run.

use schemars::{Schema, generate::SchemaSettings, transform::Transform};
use serde_json::Value;

use super::Config;

/// The schema document (JSON Schema draft 2020-12).
pub fn document() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.transforms.push(Box::new(NoNull)))
        .into_generator();
    let mut schema = generator.into_root_schema_for::<Config>();
    schema.insert("title".into(), "proxyfn configuration".into());
    schema.into()
}

/// TOML has no null: an optional key is one that may be left out, never one set to null.
#[derive(Clone, Copy, Debug)]
struct NoNull;

/// Removes `null`s from a default value (unset options).
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(members) => {
            members.retain(|_, v| !v.is_null());
            members.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

impl Transform for NoNull {
    fn transform(&mut self, schema: &mut Schema) {
        match schema.get_mut("default") {
            Some(Value::Null) => {
                schema.remove("default");
            }
            Some(default) => strip_nulls(default),
            None => {}
        }
        if let Some(Value::Array(types)) = schema.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types[0].clone();
                schema.insert("type".into(), only);
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(variants)) = schema.get_mut(keyword) {
                variants.retain(|v| v.get("type") != Some(&Value::from("null")));
            }
        }
        // `{"anyOf": [X]}` is X.
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(variants)) = schema.get(keyword)
                && variants.len() == 1
                && let Value::Object(only) = variants[0].clone()
            {
                schema.remove(keyword);
                for (key, value) in only {
                    schema.insert(key, value);
                }
            }
        }
        schemars::transform::transform_subschemas(self, schema);
    }
}
