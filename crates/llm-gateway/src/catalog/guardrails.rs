//! MLflow's gateway scorer guardrails: a registered judge (a scorer version) that checks an endpoint's
//! requests before the provider call or its answers after it, and either refuses the call (validation) or has
//! another endpoint rewrite the payload (sanitization). Guardrails and their attachments to endpoints are
//! kept in the catalog with its other entities, so every replica runs the same ones; the scorer version is
//! copied in at creation (versions never change), so a call needs no store read to run it.

use super::budgets::Named;
use super::{Catalog, CatalogError, MAX_ENTRIES, MAX_PER_ENDPOINT, Result, check_text};
use loopline_core::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest guardrail name.
const MAX_NAME: usize = 255;
/// Longest judge instructions kept.
pub const MAX_INSTRUCTIONS: usize = 64 * 1024;

/// What a judge's `inference_params` may set on its calls (sampling only: never where or how the call goes).
const INFERENCE_PARAMS: [&str; 9] = [
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
];

/// When a guardrail runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Stage {
    /// On the request, before the provider is called.
    #[serde(rename = "BEFORE")]
    Before,
    /// On the answer, before the caller gets it (not on streams).
    #[serde(rename = "AFTER")]
    After,
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum GuardAction {
    /// Refuses the call (400, `Guardrail '<name>' blocked: <rationale>`).
    #[serde(rename = "VALIDATION")]
    Validation,
    /// Has the action endpoint rewrite the payload and goes on with the rewritten one.
    #[serde(rename = "SANITIZATION")]
    Sanitization,
}

impl Named for Stage {
    const NAMES: &'static [(&'static str, Self)] = &[("BEFORE", Stage::Before), ("AFTER", Stage::After)];
    fn name(self) -> &'static str {
        match self {
            Stage::Before => "BEFORE",
            Stage::After => "AFTER",
        }
    }
}

impl Named for GuardAction {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("VALIDATION", GuardAction::Validation),
        ("SANITIZATION", GuardAction::Sanitization),
    ];
    fn name(self) -> &'static str {
        match self {
            GuardAction::Validation => "VALIDATION",
            GuardAction::Sanitization => "SANITIZATION",
        }
    }
}

/// The registered scorer version a guardrail runs, as it was registered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScorerCopy {
    pub scorer_id: String,
    pub scorer_version: i64,
    pub experiment_id: String,
    pub scorer_name: String,
    /// The serialized scorer (JSON text), gateway endpoints named by id.
    pub serialized_scorer: String,
    pub creation_time: i64,
}

/// The judge a scorer describes: instructions with `{{ inputs }}` / `{{ outputs }}` placeholders, answered
/// by a gateway endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Judge {
    pub instructions: String,
    /// The endpoint's id or name (after `gateway:/`).
    pub endpoint: String,
    /// The type the verdict is asked in (`str`, `bool`, `int`, `float`).
    pub value_type: &'static str,
    /// Extra top-level fields of the judge's chat request.
    pub inference_params: serde_json::Map<String, Value>,
}

impl ScorerCopy {
    /// The judge this scorer is, or why this server cannot run it.
    pub fn judge(&self) -> std::result::Result<Judge, String> {
        let scorer: Value = serde_json::from_str(&self.serialized_scorer)
            .map_err(|error| format!("Malformed serialized scorer: {error}"))?;
        if carries_code(&scorer) {
            return Err(
                "Gateway guardrails do not support custom scorers defined with the @scorer decorator. Use \
                 a built-in scorer or a judge created with make_judge."
                    .into(),
            );
        }
        let unsupported = || {
            "this server runs guardrails whose scorer is a judge made with make_judge on a gateway endpoint \
             (model 'gateway:/<endpoint>'); register such a judge and use its version"
                .to_string()
        };
        let data = scorer
            .get("instructions_judge_pydantic_data")
            .filter(|data| data.is_object())
            .ok_or_else(unsupported)?;
        let instructions = data.get("instructions").and_then(Value::as_str).unwrap_or("");
        if instructions.trim().is_empty() || instructions.len() > MAX_INSTRUCTIONS {
            return Err(format!(
                "the judge's instructions must be given and at most {MAX_INSTRUCTIONS} bytes"
            ));
        }
        let endpoint = data
            .get("model")
            .and_then(Value::as_str)
            .and_then(|model| model.strip_prefix("gateway:/"))
            .filter(|endpoint| !endpoint.is_empty())
            .ok_or_else(unsupported)?;
        let value_type = match data.pointer("/feedback_value_type/type").and_then(Value::as_str) {
            Some("boolean") => "bool",
            Some("integer") => "int",
            Some("number") => "float",
            _ => "str",
        };
        let inference_params = data
            .get("inference_params")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(key) = inference_params
            .keys()
            .find(|key| !INFERENCE_PARAMS.contains(&key.as_str()))
        {
            return Err(format!(
                "the judge's inference_params may set only {}; '{key}' is not one of them",
                INFERENCE_PARAMS.join(", ")
            ));
        }
        Ok(Judge {
            instructions: instructions.to_string(),
            endpoint: endpoint.to_string(),
            value_type,
            inference_params,
        })
    }
}

/// Whether a serialized scorer (or one nested in it) carries code (`call_source`: an `@scorer` function).
pub fn carries_code(value: &Value) -> bool {
    match value {
        Value::Object(object) => object.iter().any(|(key, value)| {
            (key == "call_source" && !value.is_null() && value.as_str() != Some("")) || carries_code(value)
        }),
        Value::Array(items) => items.iter().any(carries_code),
        _ => false,
    }
}

/// A guardrail as calls of one endpoint run it: its judge and the endpoints it calls, by their names now.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyGuard {
    pub name: String,
    pub stage: Stage,
    pub action: GuardAction,
    /// The judge and the name of its endpoint, or why it cannot run (the calls it guards are refused).
    pub judge: std::result::Result<(Judge, String), String>,
    /// The endpoint that rewrites payloads, by name.
    pub action_endpoint: Option<String>,
}

/// The template variables a judge's instructions use, in the order they first appear.
pub fn template_variables(instructions: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut rest = instructions;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !found.iter().any(|seen| seen == name)
        {
            found.push(name.to_string());
        }
        rest = &after[end + 2..];
    }
    found
}

/// A scorer guardrail.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Guardrail {
    pub guardrail_id: String,
    pub name: String,
    pub scorer: ScorerCopy,
    pub stage: Stage,
    pub action: GuardAction,
    /// The endpoint that rewrites payloads (sanitization), by id.
    #[serde(default)]
    pub action_endpoint_id: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    pub created_at: i64,
    #[serde(default)]
    pub last_updated_by: Option<String>,
    pub last_updated_at: i64,
}

/// A guardrail attached to an endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuardrailConfig {
    pub endpoint_id: String,
    pub guardrail_id: String,
    /// Lower runs first; none runs after every ordered one.
    #[serde(default)]
    pub execution_order: Option<i64>,
    #[serde(default)]
    pub created_by: Option<String>,
    pub created_at: i64,
}

fn config_missing(endpoint_id: &str, guardrail_id: &str) -> CatalogError {
    CatalogError::missing_text(format!(
        "GuardrailConfig not found (endpoint_id='{endpoint_id}', guardrail_id='{guardrail_id}')"
    ))
}

impl Catalog {
    /// The guardrail with this id.
    pub fn guardrail(&self, id: &str) -> Result<&Guardrail> {
        self.guardrails
            .iter()
            .find(|guardrail| guardrail.guardrail_id == id)
            .ok_or_else(|| CatalogError::missing("Guardrail", "guardrail_id", id))
    }

    /// Adds a guardrail, once its scorer is one this server can run and its action endpoint exists.
    pub fn create_guardrail(&mut self, guardrail: Guardrail) -> Result<&Guardrail> {
        check_text(&guardrail.name, "name", MAX_NAME)?;
        let judge = guardrail.scorer.judge().map_err(CatalogError::invalid)?;
        if guardrail.stage == Stage::Before
            && template_variables(&judge.instructions)
                .iter()
                .any(|name| name == "outputs")
        {
            return Err(CatalogError::invalid(
                "A BEFORE guardrail runs before there is an answer, so its judge's instructions cannot use {{ outputs }}; \
                 make it an AFTER guardrail or judge {{ inputs }}",
            ));
        }
        if let Some(endpoint) = &guardrail.action_endpoint_id {
            self.endpoint(endpoint)?;
        }
        if self.guardrails.len() >= MAX_ENTRIES {
            return Err(CatalogError::invalid(format!(
                "at most {MAX_ENTRIES} guardrails are kept"
            )));
        }
        self.guardrails.push(guardrail);
        Ok(self.guardrails.last().expect("just added"))
    }

    /// Every endpoint's guardrails, by endpoint name, in the order they run.
    pub fn guards_by_endpoint(&self) -> std::collections::HashMap<String, Vec<ReadyGuard>> {
        let mut guards = std::collections::HashMap::new();
        for endpoint in &self.endpoints {
            let Ok(attached) = self.endpoint_guardrails(&endpoint.endpoint_id) else {
                continue;
            };
            if attached.is_empty() {
                continue;
            }
            let ready = attached
                .into_iter()
                .map(|(_, guardrail)| self.ready(guardrail))
                .collect();
            guards.insert(endpoint.name.clone(), ready);
        }
        guards
    }

    fn ready(&self, guardrail: &Guardrail) -> ReadyGuard {
        let judge = guardrail.scorer.judge().and_then(|judge| {
            let endpoint = self
                .endpoint(&judge.endpoint)
                .or_else(|_| self.endpoint_named(&judge.endpoint))
                .map_err(|_| format!("its judge's endpoint '{}' no longer exists", judge.endpoint))?;
            let name = endpoint.name.clone();
            Ok((judge, name))
        });
        ReadyGuard {
            name: guardrail.name.clone(),
            stage: guardrail.stage,
            action: guardrail.action,
            judge,
            action_endpoint: guardrail
                .action_endpoint_id
                .as_deref()
                .and_then(|id| self.endpoint(id).ok())
                .map(|endpoint| endpoint.name.clone()),
        }
    }

    /// Removes a guardrail and its attachments.
    pub fn delete_guardrail(&mut self, id: &str) -> Result<()> {
        self.guardrail(id)?;
        self.guardrails.retain(|guardrail| guardrail.guardrail_id != id);
        self.guardrail_configs.retain(|config| config.guardrail_id != id);
        Ok(())
    }

    /// Attaches a guardrail to an endpoint.
    pub fn add_guardrail_to_endpoint(
        &mut self,
        endpoint_id: &str,
        guardrail_id: &str,
        execution_order: Option<i64>,
        created_by: Option<String>,
        now: i64,
    ) -> Result<&GuardrailConfig> {
        self.endpoint(endpoint_id)?;
        self.guardrail(guardrail_id)?;
        if self.config_index(endpoint_id, guardrail_id).is_some() {
            return Err(CatalogError {
                code: ErrorCode::ResourceAlreadyExists,
                message: format!("Guardrail '{guardrail_id}' is already added to endpoint '{endpoint_id}'"),
            });
        }
        let attached = self
            .guardrail_configs
            .iter()
            .filter(|config| config.endpoint_id == endpoint_id)
            .count();
        if attached >= MAX_PER_ENDPOINT {
            return Err(CatalogError::invalid(format!(
                "at most {MAX_PER_ENDPOINT} guardrails are attached to one endpoint"
            )));
        }
        self.guardrail_configs.push(GuardrailConfig {
            endpoint_id: endpoint_id.to_string(),
            guardrail_id: guardrail_id.to_string(),
            execution_order,
            created_by,
            created_at: now,
        });
        Ok(self.guardrail_configs.last().expect("just added"))
    }

    fn config_index(&self, endpoint_id: &str, guardrail_id: &str) -> Option<usize> {
        self.guardrail_configs
            .iter()
            .position(|config| config.endpoint_id == endpoint_id && config.guardrail_id == guardrail_id)
    }

    /// Sets (or, with none, clears) an attachment's order.
    pub fn update_guardrail_config(
        &mut self,
        endpoint_id: &str,
        guardrail_id: &str,
        execution_order: Option<i64>,
    ) -> Result<&GuardrailConfig> {
        let index = self
            .config_index(endpoint_id, guardrail_id)
            .ok_or_else(|| config_missing(endpoint_id, guardrail_id))?;
        self.guardrail_configs[index].execution_order = execution_order;
        Ok(&self.guardrail_configs[index])
    }

    /// Detaches a guardrail from an endpoint.
    pub fn remove_guardrail_from_endpoint(&mut self, endpoint_id: &str, guardrail_id: &str) -> Result<()> {
        let index = self
            .config_index(endpoint_id, guardrail_id)
            .ok_or_else(|| config_missing(endpoint_id, guardrail_id))?;
        self.guardrail_configs.remove(index);
        Ok(())
    }

    /// An endpoint's guardrails in the order they run: ordered ones by their order, then unordered ones, ties
    /// by guardrail id.
    pub fn endpoint_guardrails(&self, endpoint_id: &str) -> Result<Vec<(&GuardrailConfig, &Guardrail)>> {
        self.endpoint(endpoint_id)?;
        let mut attached: Vec<(&GuardrailConfig, &Guardrail)> = self
            .guardrail_configs
            .iter()
            .filter(|config| config.endpoint_id == endpoint_id)
            .filter_map(|config| Some((config, self.guardrail(&config.guardrail_id).ok()?)))
            .collect();
        attached.sort_by(|(a, _), (b, _)| {
            (a.execution_order.is_none(), a.execution_order, &a.guardrail_id).cmp(&(
                b.execution_order.is_none(),
                b.execution_order,
                &b.guardrail_id,
            ))
        });
        Ok(attached)
    }

    /// What deleting an endpoint does to guardrails: its attachments go, and guardrails that used it to
    /// rewrite payloads have none.
    pub(super) fn forget_endpoint_in_guardrails(&mut self, endpoint_id: &str) {
        self.guardrail_configs
            .retain(|config| config.endpoint_id != endpoint_id);
        for guardrail in &mut self.guardrails {
            if guardrail.action_endpoint_id.as_deref() == Some(endpoint_id) {
                guardrail.action_endpoint_id = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer(serialized: &str) -> ScorerCopy {
        ScorerCopy {
            scorer_id: "s1".into(),
            scorer_version: 1,
            experiment_id: "1".into(),
            scorer_name: "safe".into(),
            serialized_scorer: serialized.into(),
            creation_time: 1,
        }
    }

    fn guardrail(id: &str, serialized: &str) -> Guardrail {
        Guardrail {
            guardrail_id: id.into(),
            name: format!("name-{id}"),
            scorer: scorer(serialized),
            stage: Stage::Before,
            action: GuardAction::Validation,
            action_endpoint_id: None,
            created_by: None,
            created_at: 1,
            last_updated_by: None,
            last_updated_at: 1,
        }
    }

    const JUDGE: &str =
        r#"{"instructions_judge_pydantic_data": {"model": "gateway:/e-1", "instructions": "Is {{ inputs }} safe?"}}"#;

    fn catalog_with_endpoint() -> (Catalog, String) {
        let mut catalog = Catalog::default();
        let endpoint =
            serde_json::json!({"endpoint_id": "e-1", "name": "judge", "created_at": 1, "last_updated_at": 1});
        catalog.endpoints.push(serde_json::from_value(endpoint).unwrap());
        (catalog, "e-1".to_string())
    }

    #[test]
    fn a_judge_is_read_from_its_serialized_scorer() {
        let judge = scorer(JUDGE).judge().unwrap();
        assert_eq!(judge.endpoint, "e-1");
        assert_eq!(judge.value_type, "str");
        let typed = r#"{"instructions_judge_pydantic_data": {"model": "gateway:/j", "instructions": "ok?",
            "feedback_value_type": {"type": "boolean"}, "inference_params": {"temperature": 0}}}"#;
        let judge = scorer(typed).judge().unwrap();
        assert_eq!((judge.value_type, judge.inference_params.len()), ("bool", 1));
    }

    #[test]
    fn template_variables_are_found_once_in_order() {
        assert_eq!(
            template_variables("Is {{ outputs }} a fair answer to {{inputs}}? {{ outputs }} {{ not a var }} {{"),
            ["outputs", "inputs"]
        );
        assert!(template_variables("no variables }} {{").is_empty());
    }

    #[test]
    fn scorers_this_server_cannot_run_are_refused() {
        for serialized in [
            "not json",
            r#"{"call_source": "import os", "instructions_judge_pydantic_data": {"model": "gateway:/e", "instructions": "x"}}"#,
            r#"{"builtin_scorer_class": "Safety"}"#,
            r#"{"instructions_judge_pydantic_data": {"model": "openai:/gpt-4o", "instructions": "x"}}"#,
            r#"{"instructions_judge_pydantic_data": {"model": "gateway:/e", "instructions": " "}}"#,
            r#"{"instructions_judge_pydantic_data": {"model": "gateway:/e", "instructions": "x", "inference_params": {"stream": true}}}"#,
        ] {
            assert!(scorer(serialized).judge().is_err(), "{serialized}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_instructions_are_scanned_without_harm(text in "\\PC{0,200}", braces in "[{} a-z]{0,60}") {
            for instructions in [text, braces] {
                for name in template_variables(&instructions) {
                    proptest::prop_assert!(instructions.contains(&name));
                }
            }
        }
    }

    #[test]
    fn configs_run_ordered_first_then_unordered_and_go_with_their_endpoint() {
        let (mut catalog, endpoint) = catalog_with_endpoint();
        for id in ["gr-c", "gr-b", "gr-a"] {
            catalog.create_guardrail(guardrail(id, JUDGE)).unwrap();
        }
        catalog
            .add_guardrail_to_endpoint(&endpoint, "gr-a", None, None, 2)
            .unwrap();
        catalog
            .add_guardrail_to_endpoint(&endpoint, "gr-c", Some(5), None, 2)
            .unwrap();
        catalog
            .add_guardrail_to_endpoint(&endpoint, "gr-b", Some(5), None, 2)
            .unwrap();
        let order: Vec<_> = catalog
            .endpoint_guardrails(&endpoint)
            .unwrap()
            .iter()
            .map(|(config, _)| config.guardrail_id.clone())
            .collect();
        assert_eq!(order, ["gr-b", "gr-c", "gr-a"]);
        let duplicate = catalog
            .add_guardrail_to_endpoint(&endpoint, "gr-a", None, None, 3)
            .unwrap_err();
        assert_eq!(duplicate.code, ErrorCode::ResourceAlreadyExists);
        catalog.update_guardrail_config(&endpoint, "gr-a", Some(1)).unwrap();
        assert_eq!(
            catalog.endpoint_guardrails(&endpoint).unwrap()[0].1.guardrail_id,
            "gr-a"
        );
        catalog.delete_guardrail("gr-c").unwrap();
        assert_eq!(catalog.endpoint_guardrails(&endpoint).unwrap().len(), 2);
        catalog.guardrails[0].action_endpoint_id = Some(endpoint.clone());
        catalog.delete_endpoint(&endpoint).unwrap();
        assert!(catalog.guardrail_configs.is_empty());
        assert!(
            catalog
                .guardrails
                .iter()
                .all(|guardrail| guardrail.action_endpoint_id.is_none())
        );
        let missing = catalog.remove_guardrail_from_endpoint(&endpoint, "gr-a").unwrap_err();
        assert_eq!(
            missing.message,
            format!("GuardrailConfig not found (endpoint_id='{endpoint}', guardrail_id='gr-a')")
        );
    }
}
