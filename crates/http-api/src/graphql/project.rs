//! Shapes a REST-style JSON value (snake_case keys) into a GraphQL answer for a selection set: camelCase keys
//! as selected (aliases honoured), `__typename` from MLflow's type names, 64-bit integers as strings (MLflow's
//! `LongString`), a NaN metric as null.

use super::parse::Field;
use serde_json::{Map, Value};

/// The type of a field of an object type, where it is an object or a list of objects.
fn child_type(parent: &str, field: &str) -> &'static str {
    match (parent, field) {
        (_, "apiError") => "ApiError",
        ("MlflowGetExperimentResponse", "experiment") | ("MlflowRunExtension", "experiment") => "MlflowExperiment",
        ("MlflowExperiment", "tags") => "MlflowExperimentTag",
        ("MlflowGetRunResponse", "run") | ("MlflowSearchRunsResponse", "runs") => "MlflowRunExtension",
        ("MlflowRunExtension", "info") => "MlflowRunInfo",
        ("MlflowRunExtension", "data") => "MlflowRunData",
        ("MlflowRunExtension", "inputs") => "MlflowRunInputs",
        ("MlflowRunExtension", "outputs") => "MlflowRunOutputs",
        ("MlflowRunExtension", "modelVersions") | ("MlflowSearchModelVersionsResponse", "modelVersions") => {
            "MlflowModelVersion"
        }
        ("MlflowRunData", "metrics") => "MlflowMetricExtension",
        ("MlflowRunData", "params") => "MlflowParam",
        ("MlflowRunData", "tags") => "MlflowRunTag",
        ("MlflowRunInputs", "datasetInputs") => "MlflowDatasetInput",
        ("MlflowRunInputs", "modelInputs") => "MlflowModelInput",
        ("MlflowDatasetInput", "dataset") => "MlflowDataset",
        ("MlflowDatasetInput", "tags") => "MlflowInputTag",
        ("MlflowRunOutputs", "modelOutputs") => "MlflowModelOutput",
        ("MlflowModelVersion", "tags") => "MlflowModelVersionTag",
        ("MlflowListArtifactsResponse", "files") => "MlflowFileInfo",
        ("MlflowGetMetricHistoryBulkIntervalResponse", "metrics") => "MlflowMetricWithRunId",
        ("MlflowSearchDatasetsResponse", "datasetSummaries") => "MlflowDatasetSummary",
        _ => "",
    }
}

/// Whether a field is a list: a missing one is answered `[]`, as Graphene answers an empty repeated field
/// (the UI maps over it).
fn is_list(field: &str) -> bool {
    matches!(
        field,
        "tags"
            | "metrics"
            | "params"
            | "datasetInputs"
            | "modelInputs"
            | "modelOutputs"
            | "modelVersions"
            | "runs"
            | "files"
            | "aliases"
    )
}

/// `runUuid` → `run_uuid`.
pub(crate) fn snake_case(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 4);
    for character in name.chars() {
        if character.is_ascii_uppercase() {
            snake.push('_');
            snake.push(character.to_ascii_lowercase());
        } else {
            snake.push(character);
        }
    }
    snake
}

/// A leaf value as GraphQL answers it.
fn scalar(value: &Value, type_name: &str, field: &str) -> Value {
    match value {
        // Graphene answers a proto default where REST leaves the field out (a directory's size is 0).
        Value::Null if type_name == "MlflowFileInfo" && field == "fileSize" => Value::String("0".into()),
        Value::Null if type_name == "MlflowFileInfo" && field == "isDir" => Value::Bool(false),
        Value::Number(number) if number.is_i64() || number.is_u64() => Value::String(number.to_string()),
        Value::String(text)
            if matches!(type_name, "MlflowMetricExtension" | "MlflowMetricWithRunId") && field == "value" =>
        {
            match text.as_str() {
                "NaN" => Value::Null,
                "Infinity" => Value::from(f64::MAX),
                "-Infinity" => Value::from(f64::MIN),
                _ => value.clone(),
            }
        }
        other => other.clone(),
    }
}

/// The answer for `selections` of `value`, an object of type `type_name` (or a list of them).
pub fn project(value: &Value, selections: &[Field], type_name: &str) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|item| project(item, selections, type_name)).collect()),
        Value::Object(object) if !selections.is_empty() => {
            let mut answer = Map::new();
            for field in selections {
                let shaped = if field.name == "__typename" {
                    Value::String(type_name.to_string())
                } else {
                    let child = match object.get(&snake_case(&field.name)) {
                        Some(Value::Null) | None if is_list(&field.name) => &Value::Array(Vec::new()),
                        Some(found) => found,
                        None => &Value::Null,
                    };
                    if field.selections.is_empty() {
                        match child {
                            Value::Array(items) => {
                                Value::Array(items.iter().map(|item| scalar(item, type_name, &field.name)).collect())
                            }
                            other => scalar(other, type_name, &field.name),
                        }
                    } else {
                        project(child, &field.selections, child_type(type_name, &field.name))
                    }
                };
                answer.insert(field.key().to_string(), shaped);
            }
            Value::Object(answer)
        }
        Value::Null => Value::Null,
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_as_graphene_does() {
        let operations = super::super::parse::parse(
            "{ r { __typename run { info { runUuid startTime } data { metrics { key value step __typename } } } } }",
        )
        .unwrap();
        let selections = &operations[0].selections[0].selections;
        let value = json!({"run": {"info": {"run_uuid": "abc", "start_time": 1796286325146_i64},
            "data": {"metrics": [{"key": "loss", "value": "NaN", "step": 29}, {"key": "acc", "value": 0.5, "step": 3}]}}});
        assert_eq!(
            project(&value, selections, "MlflowGetRunResponse"),
            json!({"__typename": "MlflowGetRunResponse", "run": {
                "info": {"runUuid": "abc", "startTime": "1796286325146"},
                "data": {"metrics": [
                    {"key": "loss", "value": null, "step": "29", "__typename": "MlflowMetricExtension"},
                    {"key": "acc", "value": 0.5, "step": "3", "__typename": "MlflowMetricExtension"}]}}})
        );
    }
}
