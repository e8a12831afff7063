//! The trigger event a job carries: the `trigger_payload` and `trigger_metadata` fields of a
//! WebSocket assignment or a REST claim (at the top level, or inside upstream's `input_data`
//! wrapper `{trigger_id, trigger_type, trigger_payload, trigger_metadata, scenario_id}`).
//!
//! [`merge_into`] copies them into the job's variables under the same names, where the trigger
//! nodes (`nodes::trigger`) read them. A field wins over a job variable of the same name (the
//! event is the more specific source). Each must be a JSON object or a JSON text holding one;
//! anything else is a malformed job, named by field, and the job is refused.

use serde_json::{Map, Value};

/// The job fields that carry a trigger event, copied to variables of the same name.
pub const FIELDS: [&str; 2] = ["trigger_payload", "trigger_metadata"];

/// Copy the trigger fields of the job object `job` into `variables`. `Err((field, reason))`
/// when a field is present but not an object (or JSON text of one).
pub fn merge_into(
    job: &Map<String, Value>,
    variables: &mut Map<String, Value>,
) -> Result<(), (&'static str, String)> {
    let wrapper = job.get("input_data").and_then(Value::as_object);
    for field in FIELDS {
        let found = job
            .get(field)
            .filter(|v| !v.is_null())
            .or_else(|| wrapper.and_then(|w| w.get(field)).filter(|v| !v.is_null()));
        if let Some(value) = found {
            variables.insert(field.to_string(), as_object(value).map_err(|r| (field, r))?);
        }
    }
    Ok(())
}

fn as_object(value: &Value) -> Result<Value, String> {
    match value {
        Value::Object(_) => Ok(value.clone()),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(parsed @ Value::Object(_)) => Ok(parsed),
            _ => Err("expected a json object (or a json string holding one)".to_string()),
        },
        _ => Err("expected a json object of event fields".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(job: Value) -> Result<Value, (&'static str, String)> {
        let mut vars = Map::new();
        vars.insert("trigger_payload".into(), json!({"from": "variable"}));
        vars.insert("other".into(), json!(1));
        merge_into(job.as_object().expect("object"), &mut vars).map(|()| Value::Object(vars))
    }

    #[test]
    fn fields_become_variables_from_the_top_level_or_input_data() {
        let top = merged(json!({"trigger_payload": {"a": 1}, "trigger_metadata": "{\"m\": 2}"}));
        assert_eq!(
            top.unwrap(),
            json!({"trigger_payload": {"a": 1}, "other": 1, "trigger_metadata": {"m": 2}})
        );
        let wrapped = merged(json!({"input_data": {"trigger_type": "webhook",
                                                    "trigger_payload": {"b": 2}}}));
        assert_eq!(
            wrapped.unwrap(),
            json!({"trigger_payload": {"b": 2}, "other": 1})
        );
        let none = merged(json!({"trigger_payload": null}));
        assert_eq!(
            none.unwrap(),
            json!({"trigger_payload": {"from": "variable"}, "other": 1})
        );
    }

    #[test]
    fn a_field_that_is_not_an_object_is_named() {
        for bad in [json!([1]), json!(3), json!("[1]")] {
            let (field, reason) = merged(json!({ "trigger_metadata": bad })).unwrap_err();
            assert_eq!(field, "trigger_metadata");
            assert!(reason.contains("expected a json object"), "{reason}");
        }
    }
}
