//! A judge scorer that names an AI-gateway endpoint (`"model": "gateway:/<name>"`) is stored with the
//! endpoint's id, as MLflow stores it, and shown with the endpoint's current name: a renamed endpoint is
//! followed, a deleted one shows as no model (`null`), and registering a scorer for an endpoint that does not
//! exist is refused.

use crate::error::ApiError;
use loopline_llm_gateway::catalog::Catalog;
use loopline_metadata_store::MetadataStore;
use serde_json::Value;

const PREFIX: &str = "gateway:/";
/// Nesting followed into a serialized scorer (it was parsed with serde_json's own depth limit).
const MAX_DEPTH: usize = 64;

/// The gateway catalog, or an empty one when none was ever written.
pub(super) async fn catalog(store: &dyn MetadataStore) -> Result<Catalog, ApiError> {
    Ok(crate::ai_gateway::stored_catalog(store).await?.1)
}

/// Every `"model": "gateway:/..."` in a scorer, rewritten by `rewrite` (which may refuse).
fn each_reference(
    value: &mut Value,
    depth: usize,
    rewrite: &mut dyn FnMut(&str) -> Result<Value, ApiError>,
) -> Result<bool, ApiError> {
    if depth > MAX_DEPTH {
        return Ok(false);
    }
    let mut changed = false;
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                if key == "model"
                    && let Some(reference) = field.as_str().and_then(|text| text.strip_prefix(PREFIX))
                {
                    *field = rewrite(reference)?;
                    changed = true;
                } else {
                    changed |= each_reference(field, depth + 1, rewrite)?;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= each_reference(item, depth + 1, rewrite)?;
            }
        }
        _ => {}
    }
    Ok(changed)
}

/// The scorer as stored: each endpoint it names replaced by the endpoint's id; an unknown name is refused.
pub(super) fn to_ids(serialized: &str, parsed: &mut Value, catalog: &Catalog) -> Result<String, ApiError> {
    let changed = each_reference(parsed, 0, &mut |name| {
        let endpoint = catalog
            .endpoint_named(name)
            .or_else(|_| catalog.endpoint(name))
            .map_err(|missing| ApiError::new(missing.code, missing.message))?;
        Ok(Value::String(format!("{PREFIX}{}", endpoint.endpoint_id)))
    })?;
    Ok(if changed {
        parsed.to_string()
    } else {
        serialized.to_string()
    })
}

/// The scorer as shown: each endpoint id replaced by the endpoint's current name, or `null` when it is gone.
pub(super) fn to_names(serialized: &str, catalog: &Catalog) -> String {
    if !serialized.contains(PREFIX) {
        return serialized.to_string();
    }
    let Ok(mut parsed) = serde_json::from_str::<Value>(serialized) else {
        return serialized.to_string();
    };
    let changed = each_reference(&mut parsed, 0, &mut |reference| {
        Ok(
            match catalog
                .endpoint(reference)
                .or_else(|_| catalog.endpoint_named(reference))
            {
                Ok(endpoint) => Value::String(format!("{PREFIX}{}", endpoint.name)),
                Err(_) => Value::Null,
            },
        )
    });
    match changed {
        Ok(true) => parsed.to_string(),
        _ => serialized.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopline_core::ErrorCode;
    use loopline_llm_gateway::catalog::{Endpoint, Linkage, Mapping};
    use proptest::prelude::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let mut catalog = Catalog::default();
        catalog.endpoints.push(Endpoint {
            endpoint_id: "e-1".into(),
            name: "judge".into(),
            created_at: 0,
            last_updated_at: 0,
            created_by: None,
            last_updated_by: None,
            model_mappings: vec![Mapping {
                mapping_id: "m-1".into(),
                model_definition_id: "d-1".into(),
                linkage_type: Linkage::Primary,
                weight: 1.0,
                fallback_order: None,
                created_at: 0,
                created_by: None,
            }],
            tags: Default::default(),
            routing_strategy: None,
            fallback_config: None,
            experiment_id: None,
            usage_tracking: false,
            bindings: Vec::new(),
        });
        catalog
    }

    #[test]
    fn names_are_stored_as_ids_and_shown_as_current_names() {
        let mut catalog = catalog();
        let text = json!({"instructions_judge_pydantic_data": {"model": "gateway:/judge"}}).to_string();
        let stored = to_ids(&text, &mut serde_json::from_str(&text).unwrap(), &catalog).unwrap();
        assert!(stored.contains("gateway:/e-1"), "{stored}");
        assert!(to_names(&stored, &catalog).contains("gateway:/judge"));
        catalog.endpoints[0].name = "renamed".into();
        assert!(to_names(&stored, &catalog).contains("gateway:/renamed"));
        catalog.endpoints.clear();
        let shown: Value = serde_json::from_str(&to_names(&stored, &catalog)).unwrap();
        assert_eq!(shown["instructions_judge_pydantic_data"]["model"], Value::Null);
        let missing = json!({"model": "gateway:/nope"}).to_string();
        let refused = to_ids(&missing, &mut serde_json::from_str(&missing).unwrap(), &catalog).unwrap_err();
        assert_eq!(refused.code, ErrorCode::ResourceDoesNotExist);
        let plain = json!({"model": "openai:/gpt-4o"}).to_string();
        assert_eq!(
            to_ids(&plain, &mut serde_json::from_str(&plain).unwrap(), &catalog).unwrap(),
            plain
        );
    }

    #[test]
    fn deep_or_hostile_scorers_are_shown_unchanged_without_panic() {
        let deep = format!("{}\"gateway:/x\"{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(to_names(&deep, &catalog()), deep);
        let nested = (0..200).fold(json!({"model": "gateway:/judge"}), |inner, _| json!({"a": inner}));
        let text = nested.to_string();
        // Past the depth followed, a reference is left as it is (and registering it stores it as given).
        assert_eq!(to_ids(&text, &mut nested.clone(), &catalog()).unwrap(), text);
    }

    proptest! {
        #[test]
        fn any_text_is_shown_without_panic(text in ".{0,300}", name in "[a-z:/]{0,20}") {
            let _ = to_names(&text, &catalog());
            let value = json!({"model": format!("gateway:/{name}"), "x": [text]});
            let _ = to_ids(&value.to_string(), &mut value.clone(), &catalog());
        }
    }
}
