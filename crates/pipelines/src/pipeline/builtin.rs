//! The settings (`with:`) of each built-in step kind: checked when the pipeline is read, and the paths they
//! name added to the step's inputs and outputs, so the DAG and the cache see them.

use serde_json::Value;

use super::spec::{Input, Step, StepKind};

/// The settings a kind accepts, and which are required.
fn accepted(kind: StepKind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        StepKind::Command => (&[], &[]),
        StepKind::Validate => (&["data", "suite"], &["data", "suite"]),
        StepKind::Profile => (&["data", "output"], &["data", "output"]),
        StepKind::Train => (&["experiment", "run_name"], &[]),
        StepKind::Evaluate => (
            &["model", "data", "target", "task", "slices", "positive_label", "output"],
            &["model", "data", "target"],
        ),
        StepKind::Gate => (&["model", "candidate", "policy"], &["model", "candidate"]),
        StepKind::Register => (&["model", "from"], &["model", "from"]),
        StepKind::Deploy => (&["model", "alias", "version"], &["model", "alias", "version"]),
        StepKind::Materialize => (&["project", "views", "start", "end"], &["project"]),
    }
}

fn problem(step: &Step, key: &str, message: impl std::fmt::Display) -> String {
    format!("step '{}', with.{key}: {message}", step.name)
}

fn text<'a>(step: &'a Step, key: &str) -> Result<Option<&'a str>, String> {
    match step.with.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if !text.is_empty() && text.len() <= 1_000 => Ok(Some(text)),
        Some(_) => Err(problem(step, key, "must be a non-empty string")),
    }
}

/// A data setting: a path in the project (added to the inputs), or `dataset:NAME[@VERSION]`.
fn data_input(step: &Step, key: &str) -> Result<Option<Input>, String> {
    let Some(value) = text(step, key)? else { return Ok(None) };
    let input = match value.strip_prefix("dataset:") {
        Some(reference) => Input::Dataset(reference.to_string()),
        None => {
            crate::data::manifest::check_data_path(value).map_err(|e| problem(step, key, e))?;
            Input::Path(value.to_string())
        }
    };
    Ok(Some(input))
}

/// Checks a built-in step's settings and adds the paths they name to its inputs and outputs.
pub fn complete(step: &mut Step) -> Result<(), String> {
    let (known, required) = accepted(step.kind);
    for key in step.with.keys() {
        if !known.contains(&key.as_str()) {
            let expected = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            return Err(problem(
                step,
                key,
                format!("unknown setting for a {:?} step (expected {expected})", step.kind).to_lowercase(),
            ));
        }
    }
    for key in required {
        if step.with.get(*key).is_none_or(Value::is_null) {
            return Err(problem(step, key, "is required"));
        }
    }
    if step.run.is_some() && !matches!(step.kind, StepKind::Command | StepKind::Train) {
        return Err(format!("step '{}', run: a built-in step runs no command", step.name));
    }
    let mut inputs = Vec::new();
    for key in ["data", "suite"] {
        if let Some(input) = data_input(step, key)? {
            inputs.push(input);
        }
    }
    if let Some(output) = text(step, "output")? {
        crate::data::manifest::check_data_path(output).map_err(|e| problem(step, "output", e))?;
        step.outputs.push(output.to_string());
    }
    if step.kind == StepKind::Gate {
        check_gate_checks(step)?;
    }
    if step.kind == StepKind::Materialize {
        text(step, "project")?;
        text(step, "end")?;
        if text(step, "start")?.is_some() && text(step, "end")?.is_none() {
            return Err(problem(
                step,
                "start",
                "needs an end too (without either, views go on from their watermarks)",
            ));
        }
        match step.with.get("views") {
            None | Some(Value::Null) => {}
            Some(Value::Array(views))
                if !views.is_empty() && views.iter().all(|v| v.as_str().is_some_and(|t| !t.is_empty())) => {}
            Some(_) => return Err(problem(step, "views", "is a list of feature view names")),
        }
    }
    if let Some(model) = text(step, "model")?.filter(|_| step.kind == StepKind::Evaluate) {
        if !(model.starts_with("models:/") || model.starts_with("step:")) {
            return Err(problem(
                step,
                "model",
                "is a models:/NAME/VERSION URI or step:NAME (the version a register step made)",
            ));
        }
        if let Some(producer) = model.strip_prefix("step:") {
            step.after.push(producer.to_string());
        }
    }
    if step.kind == StepKind::Evaluate
        && let Some(Input::Path(path)) = data_input(step, "data")?
    {
        return Err(problem(
            step,
            "data",
            format!("'{path}': an evaluation runs on the server over a dataset version; give dataset:NAME@VERSION"),
        ));
    }
    // A version is a number, `step:NAME` (what a register step made) or, for `from`, a model URI.
    for key in ["candidate", "from", "version"] {
        match step.with.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(number)) if number.as_u64().is_some() && key != "from" => {}
            Some(Value::String(value)) if !value.is_empty() && value.len() <= 1_000 => {
                if let Some(producer) = value.strip_prefix("step:") {
                    step.after.push(producer.to_string());
                }
            }
            Some(_) => return Err(problem(step, key, "is a version number, step:NAME or a models:/ URI")),
        }
    }
    step.after.sort();
    step.after.dedup();
    for input in inputs {
        if !step.inputs.contains(&input) {
            step.inputs.push(input);
        }
    }
    // Each dataset input reaches the command through a variable of its own; two that would share one (two
    // versions of a dataset, or names differing only in punctuation) cannot both be read.
    let mut variables = std::collections::BTreeMap::new();
    for input in &step.inputs {
        if let Input::Dataset(reference) = input {
            let name = reference.split('@').next().unwrap_or(reference);
            let variable = super::runner::dataset_variable(name);
            if let Some(other) = variables.insert(variable.clone(), reference.clone())
                && other != *reference
            {
                return Err(format!(
                    "step '{}', inputs: datasets '{other}' and '{reference}' would both be given as {variable}; \
                     a step reads one version of a dataset, and names must differ in more than punctuation",
                    step.name
                ));
            }
        }
    }
    Ok(())
}

/// A gate's policy (when the step gives one, it becomes the model's policy if the model has none yet) is
/// checked as the server would check it, so a gate on an unknown metric is refused before anything runs.
fn check_gate_checks(step: &Step) -> Result<(), String> {
    match step.with.get("policy") {
        None | Some(Value::Null) => Ok(()),
        Some(policy) => crate::gate::policy::GatePolicy::parse(policy.clone())
            .map(|_| ())
            .map_err(|e| problem(step, "policy", e)),
    }
}
