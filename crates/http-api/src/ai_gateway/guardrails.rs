//! MLflow's gateway scorer-guardrail routes (`/api/3.0/mlflow/gateway/guardrails/...`), as MLflow's server
//! answers them: guardrails and their attachments kept in the gateway catalog (so every replica runs the same
//! ones), MLflow's shapes and words. Running them on calls is `openai::guard`.

use super::params::{Params, invalid_value, max_results, named, number, offset, page_token, params};
use super::{CatalogSync, now_ms, refusal};
use crate::error::ApiError;
use axum::Router;
use axum::extract::Request;
use loopline_access::Principal;
use loopline_llm_gateway::catalog::{
    Catalog, CatalogError, GuardAction, Guardrail, GuardrailConfig, Named, ScorerCopy, Stage, new_id,
};
use serde_json::{Value, json};
use std::sync::Arc;

const PREFIX: &str = "/api/3.0/mlflow/gateway/guardrails";

#[derive(Debug, Clone, Copy)]
enum Op {
    Create,
    Get,
    Delete,
    List,
    Add,
    Remove,
    ListForEndpoint,
    UpdateConfig,
}

/// Every route: method, path under the prefix, operation.
const ROUTES: &[(&str, &str, Op)] = &[
    ("POST", "/create", Op::Create),
    ("GET", "/get", Op::Get),
    ("DELETE", "/delete", Op::Delete),
    ("GET", "/list", Op::List),
    ("POST", "/add-to-endpoint", Op::Add),
    ("DELETE", "/remove-from-endpoint", Op::Remove),
    ("GET", "/list-for-endpoint", Op::ListForEndpoint),
    ("PATCH", "/update-config", Op::UpdateConfig),
];

/// Every route (method, full path), for the permission table.
pub fn route_list() -> Vec<(&'static str, String)> {
    super::op_route_list(PREFIX, ROUTES)
}

/// The routes over `sync`.
pub fn routes(sync: Arc<CatalogSync>) -> Router {
    super::op_routes(PREFIX, ROUTES, sync, |sync: Arc<CatalogSync>, op, request| async move {
        answer(&sync, op, request).await
    })
}

/// A guardrail as MLflow's server writes it: its scorer version whole, the action endpoint by name.
fn guardrail_json(guardrail: &Guardrail, catalog: &Catalog) -> Value {
    let scorer = &guardrail.scorer;
    let mut value = json!({
        "guardrail_id": guardrail.guardrail_id,
        "name": guardrail.name,
        "scorer": {
            "experiment_id": scorer.experiment_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(scorer.experiment_id)),
            "scorer_name": scorer.scorer_name,
            "scorer_version": scorer.scorer_version,
            "serialized_scorer": scorer.serialized_scorer,
            "creation_time": scorer.creation_time,
            "scorer_id": scorer.scorer_id,
        },
        "stage": guardrail.stage.name(),
        "action": guardrail.action.name(),
        "created_by": guardrail.created_by.clone().unwrap_or_default(),
        "created_at": guardrail.created_at,
        "last_updated_by": guardrail.last_updated_by.clone().unwrap_or_default(),
        "last_updated_at": guardrail.last_updated_at,
    });
    if let Some(endpoint) = guardrail
        .action_endpoint_id
        .as_deref()
        .and_then(|id| catalog.endpoint(id).ok())
    {
        value["action_endpoint_id"] = json!(endpoint.name);
    }
    value
}

/// An attachment as MLflow's server writes it, with its guardrail.
fn config_json(config: &GuardrailConfig, guardrail: &Guardrail, catalog: &Catalog) -> Value {
    let mut value = json!({
        "endpoint_id": config.endpoint_id,
        "guardrail_id": config.guardrail_id,
        "created_by": config.created_by.clone().unwrap_or_default(),
        "created_at": config.created_at,
        "guardrail": guardrail_json(guardrail, catalog),
    });
    if let Some(order) = config.execution_order {
        value["execution_order"] = json!(order);
    }
    value
}

/// An integer field (a JSON number or, in a query string, text); `None` when absent.
fn integer(params: &Params, field: &str) -> Result<Option<i64>, ApiError> {
    match params.0.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match number(value) {
            Some(wanted) if wanted.fract() == 0.0 && wanted.abs() <= 9.0e15 => Ok(Some(wanted as i64)),
            _ => Err(invalid_value(value, field)),
        },
    }
}

/// A required enum field; its unspecified value (0) or an unknown name is refused as MLflow means to.
fn required_enum<T: Named>(params: &Params, field: &str) -> Result<T, ApiError> {
    named::<T>(params, field, field)?.ok_or_else(|| super::params::missing(field))
}

/// The scorer version a new guardrail runs, read from the tracking store.
async fn scorer_copy(sync: &CatalogSync, params: &Params) -> Result<ScorerCopy, ApiError> {
    let scorer_id = params.required("scorer_id")?;
    let version = integer(params, "scorer_version")?.ok_or_else(|| super::params::missing("scorer_version"))?;
    let scorer = sync.store.scorer_by_id(&scorer_id, version).await?;
    Ok(ScorerCopy {
        scorer_id: scorer.scorer_id,
        scorer_version: scorer.version,
        experiment_id: scorer.experiment_id,
        scorer_name: scorer.name,
        serialized_scorer: scorer.serialized,
        creation_time: scorer.creation_time,
    })
}

async fn answer(sync: &CatalogSync, op: Op, request: Request) -> Result<Value, ApiError> {
    let caller = request
        .extensions()
        .get::<Principal>()
        .map(|principal| principal.username.to_string());
    let params = Params(params(request).await?);
    let now = now_ms();
    match op {
        Op::Create => {
            let name = params.required("name")?;
            let stage: Stage = required_enum(&params, "stage")?;
            let action: GuardAction = required_enum(&params, "action")?;
            let scorer = scorer_copy(sync, &params).await?;
            let action_endpoint_id = params.text("action_endpoint_id")?.filter(|id| !id.is_empty());
            let guardrail = Guardrail {
                guardrail_id: new_id("gr"),
                name,
                scorer,
                stage,
                action,
                action_endpoint_id,
                created_by: caller.clone(),
                created_at: now,
                last_updated_by: caller,
                last_updated_at: now,
            };
            let (made, catalog) =
                change_and_read(sync, |catalog| catalog.create_guardrail(guardrail.clone()).cloned()).await?;
            Ok(json!({"guardrail": guardrail_json(&made, &catalog)}))
        }
        Op::Get => {
            let id = params.required("guardrail_id")?;
            let (_, catalog) = sync.load().await?;
            let guardrail = catalog.guardrail(&id).map_err(refusal)?;
            Ok(json!({"guardrail": guardrail_json(guardrail, &catalog)}))
        }
        Op::Delete => {
            let id = params.required("guardrail_id")?;
            sync.change(|catalog| catalog.delete_guardrail(&id)).await?;
            Ok(json!({}))
        }
        Op::List => {
            // MLflow takes a missing or zero `max_results` as its default page.
            let wanted = match integer(&params, "max_results") {
                Ok(Some(0)) => 1000,
                _ => max_results(&params)?,
            };
            let start = offset(params.text("page_token")?)?;
            let (_, catalog) = sync.load().await?;
            let mut guardrails: Vec<&Guardrail> = catalog.guardrails.iter().collect();
            guardrails.sort_by(|a, b| a.guardrail_id.cmp(&b.guardrail_id));
            let page: Vec<Value> = guardrails
                .iter()
                .skip(start)
                .take(wanted)
                .map(|guardrail| guardrail_json(guardrail, &catalog))
                .collect();
            let mut answer = json!({"guardrails": page});
            if let Some(token) = page_token(start, wanted, guardrails.len()) {
                answer["next_page_token"] = json!(token);
            }
            Ok(answer)
        }
        Op::Add => {
            let endpoint_id = params.required("endpoint_id")?;
            let guardrail_id = params.required("guardrail_id")?;
            let order = integer(&params, "execution_order")?;
            let (config, catalog) = change_and_read(sync, |catalog| {
                catalog
                    .add_guardrail_to_endpoint(&endpoint_id, &guardrail_id, order, caller.clone(), now)
                    .cloned()
            })
            .await?;
            config_answer(&config, &catalog)
        }
        Op::UpdateConfig => {
            let endpoint_id = params.required("endpoint_id")?;
            let guardrail_id = params.required("guardrail_id")?;
            let order = integer(&params, "execution_order")?;
            let (config, catalog) = change_and_read(sync, |catalog| {
                catalog
                    .update_guardrail_config(&endpoint_id, &guardrail_id, order)
                    .cloned()
            })
            .await?;
            config_answer(&config, &catalog)
        }
        Op::Remove => {
            let endpoint_id = params.required("endpoint_id")?;
            let guardrail_id = params.required("guardrail_id")?;
            sync.change(|catalog| catalog.remove_guardrail_from_endpoint(&endpoint_id, &guardrail_id))
                .await?;
            Ok(json!({}))
        }
        Op::ListForEndpoint => {
            let endpoint_id = params.required("endpoint_id")?;
            let (_, catalog) = sync.load().await?;
            let configs: Vec<Value> = catalog
                .endpoint_guardrails(&endpoint_id)
                .map_err(refusal)?
                .into_iter()
                .map(|(config, guardrail)| config_json(config, guardrail, &catalog))
                .collect();
            Ok(json!({"configs": configs}))
        }
    }
}

/// A change, and the catalog as it is after it (to name endpoints in the answer).
async fn change_and_read<T>(
    sync: &CatalogSync,
    mut change: impl FnMut(&mut Catalog) -> Result<T, CatalogError>,
) -> Result<(T, Catalog), ApiError> {
    sync.change(|catalog| {
        let answer = change(catalog)?;
        Ok((answer, catalog.clone()))
    })
    .await
}

fn config_answer(config: &GuardrailConfig, catalog: &Catalog) -> Result<Value, ApiError> {
    let guardrail = catalog.guardrail(&config.guardrail_id).map_err(refusal)?;
    Ok(json!({"config": config_json(config, guardrail, catalog)}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopline_core::ErrorCode;

    #[test]
    fn enums_are_read_by_name_or_number_and_unspecified_is_refused() {
        let params = |value: Value| Params(json!({"stage": value}).as_object().unwrap().clone());
        assert_eq!(
            required_enum::<Stage>(&params(json!("AFTER")), "stage").unwrap(),
            Stage::After
        );
        assert_eq!(
            required_enum::<Stage>(&params(json!(1)), "stage").unwrap(),
            Stage::Before
        );
        for bad in [
            json!(0),
            json!("GUARDRAIL_STAGE_UNSPECIFIED"),
            json!("BOGUS"),
            json!(3),
            json!(true),
        ] {
            let error = required_enum::<Stage>(&params(bad.clone()), "stage").unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidParameterValue, "{bad}");
        }
    }

    #[test]
    fn integers_are_whole_numbers_or_their_text() {
        let params = |value: Value| Params(json!({"n": value}).as_object().unwrap().clone());
        assert_eq!(integer(&params(json!(5)), "n").unwrap(), Some(5));
        assert_eq!(integer(&params(json!("-3")), "n").unwrap(), Some(-3));
        assert_eq!(integer(&params(Value::Null), "n").unwrap(), None);
        for bad in [json!(1.5), json!("abc"), json!(1e300), json!([1])] {
            assert!(integer(&params(bad.clone()), "n").is_err(), "{bad}");
        }
    }
}
