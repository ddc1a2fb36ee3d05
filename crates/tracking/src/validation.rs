//! MLflow's server-side validation rules, with its limits and messages.

use crate::error::{TrackingError, TrackingResult};
use loopline_metadata_store::{LogBatch, Tag};

/// Longest metric, param or tag key.
pub const MAX_KEY_LENGTH: usize = 250;
/// Longest param value.
pub const MAX_PARAM_VALUE_LENGTH: usize = 6000;
/// Longest run tag value.
pub const MAX_RUN_TAG_VALUE_LENGTH: usize = 8000;
/// Longest experiment name.
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
/// Longest experiment tag value.
pub const MAX_EXPERIMENT_TAG_VALUE_LENGTH: usize = 20_000;
/// Longest registry tag value.
pub const MAX_REGISTRY_TAG_VALUE_LENGTH: usize = 100_000;
/// Most metrics, params and tags in one batch, together.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Most params, and most tags, in one batch.
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;

fn invalid(message: String) -> TrackingError {
    TrackingError::InvalidParameter(message)
}

/// A required request field, or MLflow's "missing value" error naming it.
pub fn required<'a>(value: Option<&'a str>, field: &str) -> TrackingResult<&'a str> {
    match value {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(invalid(format!(
            "Missing value for required parameter '{field}'. See the API docs for more information about request parameters."
        ))),
    }
}

/// Checks a metric, param or tag key: allowed characters, length, no traversal.
pub fn validate_key(kind: &str, key: &str) -> TrackingResult<()> {
    if key.is_empty() {
        return Err(invalid(format!("Invalid {kind} name: ''. Names may not be empty.")));
    }
    let allowed = key
        .chars()
        .all(|character| character.is_alphanumeric() || "_-. :/".contains(character));
    if !allowed {
        return Err(invalid(format!(
            "Invalid {kind} name: '{key}'. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)."
        )));
    }
    if key.split('/').any(|segment| segment == ".." || segment == ".") || key.starts_with('/') {
        return Err(invalid(format!(
            "Invalid {kind} name: '{key}'. Names cannot resolve to a different path or start with a slash."
        )));
    }
    if key.len() > MAX_KEY_LENGTH {
        return Err(invalid(format!(
            "{kind} '{key}' had length {}, which exceeded length limit of {MAX_KEY_LENGTH}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a value length against a limit.
pub fn validate_length(kind: &str, key: &str, value: &str, limit: usize) -> TrackingResult<()> {
    if value.len() > limit {
        return Err(invalid(format!(
            "{kind} '{key}' had length {}, which exceeded length limit of {limit}",
            value.len()
        )));
    }
    Ok(())
}

/// Checks an experiment name.
pub fn validate_experiment_name(name: &str) -> TrackingResult<()> {
    if name.trim().is_empty() {
        return Err(invalid(
            "Invalid experiment name: ''. An experiment name must be a non-empty string.".to_string(),
        ));
    }
    validate_length("Experiment name", name, name, MAX_EXPERIMENT_NAME_LENGTH)
}

/// Checks tags with a value limit.
pub fn validate_tags(tags: &[Tag], value_limit: usize) -> TrackingResult<()> {
    for tag in tags {
        validate_key("tag", &tag.key)?;
        validate_length("Tag value", &tag.key, &tag.value, value_limit)?;
    }
    Ok(())
}

/// Checks a whole log-batch against MLflow's limits.
pub fn validate_batch(batch: &LogBatch) -> TrackingResult<()> {
    let total = batch.metrics.len() + batch.params.len() + batch.tags.len();
    if total > MAX_ENTITIES_PER_BATCH {
        return Err(invalid(format!(
            "A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics, params, and tags in total. Got {total}."
        )));
    }
    if batch.params.len() > MAX_PARAMS_TAGS_PER_BATCH {
        return Err(invalid(format!(
            "A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} params. Got {} params.",
            batch.params.len()
        )));
    }
    if batch.tags.len() > MAX_PARAMS_TAGS_PER_BATCH {
        return Err(invalid(format!(
            "A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} tags. Got {} tags.",
            batch.tags.len()
        )));
    }
    for metric in &batch.metrics {
        validate_key("metric", &metric.key)?;
    }
    for param in &batch.params {
        validate_key("parameter", &param.key)?;
        validate_length("Param value", &param.key, &param.value, MAX_PARAM_VALUE_LENGTH)?;
    }
    validate_tags(&batch.tags, MAX_RUN_TAG_VALUE_LENGTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_mlflow_rules() {
        assert!(validate_key("metric", "train/loss: epoch 1").is_ok());
        assert!(validate_key("metric", "bad$key").is_err());
        assert!(validate_key("metric", "../escape").is_err());
        assert!(validate_key("metric", &"k".repeat(251)).is_err());
        assert!(validate_key("metric", "").is_err());
    }

    #[test]
    fn batches_are_bounded() {
        let mut batch = LogBatch {
            params: (0..101).map(|index| Tag::new(format!("p{index}"), "v")).collect(),
            ..LogBatch::default()
        };
        assert!(
            validate_batch(&batch)
                .unwrap_err()
                .to_string()
                .contains("at most 100 params")
        );
        batch.params.truncate(1);
        batch.params[0].value = "x".repeat(6001);
        assert!(validate_batch(&batch).is_err());
    }
}
