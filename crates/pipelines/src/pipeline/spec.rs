//! `loopline.yaml`: a pipeline as a DAG of steps, read and checked before anything runs. Every problem a
//! file can have is found here and named by step and field: a cycle, an unknown step kind, an input that
//! nothing provides, an output two steps claim, a bad schedule, a gate on a metric nobody computes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::manifest::check_data_path;

/// The most steps a pipeline may have.
pub const MAX_STEPS: usize = 200;
/// The most inputs or outputs one step may declare.
pub const MAX_PATHS: usize = 1_000;
/// The longest a step may be given to run.
pub const MAX_TIMEOUT_SECONDS: u64 = 7 * 24 * 3_600;
/// The most retries of a step.
pub const MAX_RETRIES: u32 = 20;
/// Metrics an `evaluate` step computes, which gates may name.
pub const EVALUATION_METRICS: &[&str] = &[
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "mae",
    "mse",
    "rmse",
    "r2",
    "latency_p50_ms",
    "latency_p99_ms",
    "model_size_bytes",
];

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// The user's command.
    Command,
    /// A Great Expectations suite over a table; a broken expectation fails the run.
    Validate,
    /// A profile of a table (the `loopline profile` format).
    Profile,
    /// The user's training command, logging into a nested run of the pipeline's run.
    Train,
    /// A model on an evaluation table through the serving runtimes: metrics overall and per slice.
    Evaluate,
    /// The registry's quality gate for a candidate version.
    Gate,
    /// Registers the model a training step logged.
    Register,
    /// Moves an alias; the deployment's rollout policy takes over.
    Deploy,
    /// Materialises a feature project's views into the online store, each from where it last ended.
    Materialize,
}

impl StepKind {
    /// Whether the server runs the step (it acts on the registry or the feature store, so it always runs).
    pub fn on_server(self) -> bool {
        matches!(
            self,
            StepKind::Evaluate | StepKind::Gate | StepKind::Register | StepKind::Deploy | StepKind::Materialize
        )
    }

    fn parse(text: &str) -> Option<StepKind> {
        serde_json::from_value(Value::from(text)).ok()
    }
}

/// Something a step reads: its content is part of the step's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// A file or directory in the project.
    Path(String),
    /// A dataset version: `name` (the newest when the run starts) or `name@version`.
    Dataset(String),
    /// A model URI (`models:/name/version` or `models:/name@alias`).
    Model(String),
}

/// How a step is retried.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    /// Seconds before the first retry; doubled for each next one (at most 5 minutes).
    pub backoff_seconds: f64,
}

/// What a step asks of the machine that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// CPU cores.
    pub cpus: f64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// GPUs.
    pub gpus: u32,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Its name.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// The command (`sh -c` for a string; argv for a list), with `${param}` replaced.
    pub run: Option<Vec<String>>,
    /// Whether `run` is one shell line.
    pub shell: bool,
    /// What it reads.
    pub inputs: Vec<Input>,
    /// Parameter keys it reads.
    pub params: Vec<String>,
    /// Files and directories it writes (restored from the cache on a hit).
    pub outputs: Vec<String>,
    /// Steps it runs after besides those whose outputs it reads.
    pub after: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Retries.
    pub retry: Retry,
    /// Seconds before it is stopped.
    pub timeout_seconds: u64,
    /// What it needs.
    pub resources: Resources,
    /// Where it runs: `local` or `ray`.
    pub executor: String,
    /// Settings of a built-in kind (`data`, `suite`, `model`, `target`, `checks`...).
    pub with: BTreeMap<String, Value>,
    /// Whether its result may be reused when nothing it reads changed.
    pub cache: bool,
}

/// What starts a pipeline besides a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A cron schedule (five fields, UTC).
    Schedule(String),
    /// A new version of a dataset.
    Dataset(String),
    /// A new version of a registered model.
    Model(String),
    /// A retraining request from a monitor's alert.
    Alert(String),
}

/// A checked pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Its name.
    pub name: String,
    /// Default parameter values, by dotted key.
    pub params: BTreeMap<String, Value>,
    /// Steps in an order that respects every dependency.
    pub steps: Vec<Step>,
    /// Each step's dependencies, by name.
    pub dependencies: BTreeMap<String, BTreeSet<String>>,
    /// What starts it.
    pub triggers: Vec<Trigger>,
}

/// Reads a pipeline file, refusing one larger than a YAML document may be without reading the rest (a device
/// or a huge file is never read whole).
pub fn read_pipeline_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let limit = loopline_model_runtime_api::yaml_bounds::MAX_DOCUMENT_BYTES;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(limit as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() > limit {
        return Err(format!(
            "{} is larger than the {limit} bytes a pipeline file may have",
            path.display()
        ));
    }
    Ok(text)
}

/// A problem in a pipeline file, with where it is.
fn at(step: &str, field: &str, message: impl std::fmt::Display) -> String {
    if step.is_empty() {
        format!("{field}: {message}")
    } else {
        format!("step '{step}', {field}: {message}")
    }
}

fn check_identifier(text: &str, what: &str) -> Result<(), String> {
    let valid = !text.is_empty()
        && text.len() <= 100
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        let shown: String = text.chars().take(60).collect();
        Err(format!(
            "'{shown}' is not a valid {what} (letters, digits, '.', '_', '-'; at most 100)"
        ))
    }
}

/// Flattens nested parameter maps into dotted keys (`train: {lr: 0.1}` -> `train.lr`).
fn flatten(prefix: &str, value: &Value, into: &mut BTreeMap<String, Value>, depth: usize) -> Result<(), String> {
    match value {
        Value::Object(map) if depth < 8 => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, value, into, depth + 1)?;
            }
            Ok(())
        }
        Value::Object(_) => Err(at("", "params", "nested deeper than 8 levels")),
        other => {
            check_identifier(prefix, "parameter key").map_err(|e| at("", "params", e))?;
            into.insert(prefix.to_string(), other.clone());
            Ok(())
        }
    }
}

impl Pipeline {
    /// Reads a pipeline file's text; `default_name` names it when the file does not.
    pub fn parse(text: &str, default_name: &str) -> Result<Pipeline, String> {
        Pipeline::parse_with_params(text, default_name, &BTreeMap::new())
    }

    /// As [`Pipeline::parse`], with parameter values given for this run (each must be a parameter of the
    /// pipeline).
    pub fn parse_with_params(
        text: &str,
        default_name: &str,
        overrides: &BTreeMap<String, Value>,
    ) -> Result<Pipeline, String> {
        let document = loopline_model_runtime_api::yaml_bounds::load_json(text)?;
        let Value::Object(mut document) = document else {
            return Err("a pipeline file is a mapping with 'steps'".into());
        };
        for key in document.keys() {
            if !["pipeline", "params", "steps", "triggers", "executor"].contains(&key.as_str()) {
                return Err(at(
                    "",
                    key,
                    "unknown field (expected pipeline, params, steps, triggers, executor)",
                ));
            }
        }
        let name = match document.remove("pipeline") {
            Some(Value::String(name)) => name,
            None => default_name.to_string(),
            Some(_) => return Err(at("", "pipeline", "must be a name")),
        };
        check_identifier(&name, "pipeline name").map_err(|e| at("", "pipeline", e))?;
        let mut params = BTreeMap::new();
        match document.remove("params") {
            None | Some(Value::Null) => {}
            Some(value @ Value::Object(_)) => flatten("", &value, &mut params, 0)?,
            Some(_) => return Err(at("", "params", "must be a mapping of names to values")),
        }
        for (key, value) in overrides {
            if !params.contains_key(key) {
                return Err(at(
                    "",
                    "params",
                    format!("'{key}' is given a value but is not a parameter of the pipeline"),
                ));
            }
            params.insert(key.clone(), value.clone());
        }
        let default_executor = match document.remove("executor") {
            None => "local".to_string(),
            Some(Value::String(executor)) => executor,
            Some(_) => return Err(at("", "executor", "must be 'local' or 'ray'")),
        };
        let Some(Value::Object(raw_steps)) = document.remove("steps") else {
            return Err(at("", "steps", "a mapping of step names to steps is required"));
        };
        if raw_steps.is_empty() || raw_steps.len() > MAX_STEPS {
            return Err(at("", "steps", format!("a pipeline has 1 to {MAX_STEPS} steps")));
        }
        let mut steps = Vec::new();
        for (step_name, raw) in raw_steps {
            check_identifier(&step_name, "step name").map_err(|e| at("", "steps", e))?;
            steps.push(parse_step(&step_name, raw, &params, &default_executor)?);
        }
        let triggers = match document.remove("triggers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().map(parse_trigger).collect::<Result<_, _>>()?,
            Some(_) => return Err(at("", "triggers", "must be a list")),
        };
        let dependencies = dependencies(&steps)?;
        let order = topological_order(&steps, &dependencies)?;
        let mut by_name: BTreeMap<String, Step> = steps.into_iter().map(|s| (s.name.clone(), s)).collect();
        let steps = order.iter().filter_map(|name| by_name.remove(name)).collect();
        Ok(Pipeline {
            name,
            params,
            steps,
            dependencies,
            triggers,
        })
    }

    /// The step with this name.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The steps downstream of `name` (itself included), in run order.
    pub fn downstream_of(&self, name: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::from([name.to_string()]);
        for step in &self.steps {
            if self.dependencies[&step.name].iter().any(|d| found.contains(d)) {
                found.insert(step.name.clone());
            }
        }
        found
    }
}

fn parse_step(
    name: &str,
    raw: Value,
    params: &BTreeMap<String, Value>,
    default_executor: &str,
) -> Result<Step, String> {
    let Value::Object(mut raw) = raw else {
        return Err(at(name, "step", "must be a mapping"));
    };
    let field = |raw: &mut serde_json::Map<String, Value>, key: &str| raw.remove(key);
    let (run, shell) = match field(&mut raw, "run") {
        None | Some(Value::Null) => (None, false),
        Some(Value::String(line)) => (Some(vec![line]), true),
        Some(Value::Array(items)) if !items.is_empty() => {
            let argv: Option<Vec<String>> = items.iter().map(|v| v.as_str().map(str::to_string)).collect();
            (
                Some(argv.ok_or_else(|| at(name, "run", "a list must hold strings only"))?),
                false,
            )
        }
        Some(_) => {
            return Err(at(
                name,
                "run",
                "must be a command line or a non-empty list of arguments",
            ));
        }
    };
    let kind = match field(&mut raw, "kind") {
        None => StepKind::Command,
        Some(Value::String(kind)) => StepKind::parse(&kind).ok_or_else(|| {
            at(
                name,
                "kind",
                format!(
                    "unknown step kind '{kind}' (command, validate, profile, train, evaluate, gate, register, deploy)"
                ),
            )
        })?,
        Some(_) => return Err(at(name, "kind", "must be a step kind")),
    };
    if matches!(kind, StepKind::Command | StepKind::Train) && run.is_none() {
        return Err(at(
            name,
            "run",
            format!(
                "a {} step needs a command",
                if kind == StepKind::Train { "train" } else { "command" }
            ),
        ));
    }
    let strings = |raw: &mut serde_json::Map<String, Value>, key: &str| -> Result<Vec<String>, String> {
        match raw.remove(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(one)) => Ok(vec![one]),
            Some(Value::Array(items)) if items.len() <= MAX_PATHS => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| at(name, key, "must be a list of strings"))
                })
                .collect(),
            Some(_) => Err(at(name, key, format!("must be a list of at most {MAX_PATHS} strings"))),
        }
    };
    let inputs = match field(&mut raw, "inputs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_PATHS => items
            .iter()
            .map(|item| parse_input(name, item))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(at(
                name,
                "inputs",
                format!("must be a list of at most {MAX_PATHS} inputs"),
            ));
        }
    };
    let step_params = strings(&mut raw, "params")?;
    for key in &step_params {
        if !params.contains_key(key) {
            return Err(at(
                name,
                "params",
                format!("'{key}' is not among the pipeline's params"),
            ));
        }
    }
    let outputs = strings(&mut raw, "outputs")?;
    for output in &outputs {
        check_data_path(output.trim_end_matches('/')).map_err(|e| at(name, "outputs", e))?;
    }
    let after = strings(&mut raw, "after")?;
    let env = match field(&mut raw, "env") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(key, value)| {
                let valid_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let value = match value {
                    Value::String(text) => text,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(at(name, "env", format!("'{key}' must be a string, number or boolean"))),
                };
                if !valid_key || value.contains('\0') {
                    return Err(at(name, "env", format!("'{key}' is not a usable variable")));
                }
                Ok((key, value))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(at(name, "env", "must be a mapping")),
    };
    let number = |raw: &mut serde_json::Map<String, Value>, key: &str, default: f64, max: f64| -> Result<f64, String> {
        match raw.remove(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| v.is_finite() && *v >= 0.0 && *v <= max)
                .ok_or_else(|| at(name, key, format!("must be a number from 0 to {max}"))),
            Some(_) => Err(at(name, key, "must be a number")),
        }
    };
    let retry = Retry {
        retries: number(&mut raw, "retries", 0.0, f64::from(MAX_RETRIES))? as u32,
        backoff_seconds: number(&mut raw, "retry_backoff_seconds", 2.0, 300.0)?,
    };
    let timeout_seconds =
        number(&mut raw, "timeout_seconds", 24.0 * 3_600.0, MAX_TIMEOUT_SECONDS as f64)?.ceil() as u64;
    let resources = match field(&mut raw, "resources") {
        None | Some(Value::Null) => Resources::default(),
        Some(Value::Object(mut map)) => {
            let resources = Resources {
                cpus: number(&mut map, "cpus", 0.0, 1_024.0)?,
                memory_mb: number(&mut map, "memory_mb", 0.0, 1e9)? as u64,
                gpus: number(&mut map, "gpus", 0.0, 64.0)? as u32,
            };
            if let Some(key) = map.keys().next() {
                return Err(at(
                    name,
                    "resources",
                    format!("unknown field '{key}' (cpus, memory_mb, gpus)"),
                ));
            }
            resources
        }
        Some(_) => return Err(at(name, "resources", "must be a mapping")),
    };
    let executor = match field(&mut raw, "executor") {
        None => default_executor.to_string(),
        Some(Value::String(executor)) => executor,
        Some(_) => return Err(at(name, "executor", "must be 'local' or 'ray'")),
    };
    if !["local", "ray"].contains(&executor.as_str()) {
        return Err(at(
            name,
            "executor",
            format!("unknown executor '{executor}' (local or ray)"),
        ));
    }
    let cache = match field(&mut raw, "cache") {
        None => true,
        Some(Value::Bool(cache)) => cache,
        Some(_) => return Err(at(name, "cache", "must be true or false")),
    };
    let with = match field(&mut raw, "with") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => map.into_iter().collect(),
        Some(_) => return Err(at(name, "with", "must be a mapping of the step kind's settings")),
    };
    if let Some(key) = raw.keys().next() {
        return Err(at(
            name,
            key,
            "unknown field (expected run, kind, inputs, params, outputs, after, env, retries, retry_backoff_seconds, \
             timeout_seconds, resources, executor, cache, with)",
        ));
    }
    let mut step = Step {
        name: name.to_string(),
        kind,
        run: run
            .map(|argv| {
                argv.into_iter()
                    .map(|a| substitute(&a, params, shell))
                    .collect::<Result<_, _>>()
            })
            .transpose()
            .map_err(|e| at(name, "run", e))?,
        shell,
        inputs,
        params: step_params,
        outputs,
        after,
        env,
        retry,
        timeout_seconds,
        resources,
        executor,
        with,
        cache,
    };
    super::builtin::complete(&mut step)?;
    Ok(step)
}

/// Where a shell line stands after some text: outside quotes, inside '...' or inside "...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Bare,
    Single,
    Double,
}

fn quoting_after(mut state: Quoting, text: &str) -> Quoting {
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        state = match (state, c) {
            (Quoting::Single, '\'') => Quoting::Bare,
            (Quoting::Single, _) => Quoting::Single,
            (_, '\\') => {
                escaped = true;
                state
            }
            (Quoting::Bare, '\'') => Quoting::Single,
            (Quoting::Bare, '"') => Quoting::Double,
            (Quoting::Double, '"') => Quoting::Bare,
            (other, _) => other,
        };
    }
    state
}

/// Replaces `${key}` with the parameter's value.
fn substitute(text: &str, params: &BTreeMap<String, Value>, shell: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    let mut quoting = Quoting::Bare;
    while let Some(start) = rest.find("${") {
        quoting = quoting_after(quoting, &rest[..start]);
        if shell && quoting != Quoting::Bare {
            // Quoted again inside quotes, a value could close them and become shell code.
            return Err(format!(
                "'{}' is inside quotes; write it bare (Loopline quotes the value itself) or use the list form of run",
                &rest[start..start + rest[start..].find('}').map_or(2, |e| e + 1)]
            ));
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("'${' without a closing '}'")?;
        let key = after[..end].trim();
        let key = key.strip_prefix("params.").unwrap_or(key);
        let value = params
            .get(key)
            .ok_or_else(|| format!("'${{{key}}}' names no parameter"))?;
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        if shell {
            // A value given with --param must stay one word of the command line, never become shell code.
            out.push('\'');
            out.push_str(&text.replace('\'', "'\\''"));
            out.push('\'');
        } else {
            out.push_str(&text);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_input(step: &str, item: &Value) -> Result<Input, String> {
    let input = match item {
        Value::String(path) => Input::Path(path.clone()),
        Value::Object(map) if map.len() == 1 => {
            let (key, value) = map.iter().next().expect("one entry");
            let text = value
                .as_str()
                .ok_or_else(|| at(step, "inputs", format!("'{key}' must be a string")))?;
            match key.as_str() {
                "path" => Input::Path(text.to_string()),
                "dataset" => Input::Dataset(text.to_string()),
                "model" => Input::Model(text.to_string()),
                other => {
                    return Err(at(
                        step,
                        "inputs",
                        format!("unknown input '{other}' (path, dataset or model)"),
                    ));
                }
            }
        }
        _ => return Err(at(step, "inputs", "each input is a path, or {path|dataset|model: ...}")),
    };
    match &input {
        Input::Path(path) => check_data_path(path.trim_end_matches('/')).map_err(|e| at(step, "inputs", e))?,
        Input::Dataset(reference) => {
            let (name, version) = reference.split_once('@').unwrap_or((reference, "latest"));
            crate::data::pointer::check_name(name).map_err(|e| at(step, "inputs", e))?;
            if version != "latest" && version.parse::<u32>().is_err() {
                return Err(at(
                    step,
                    "inputs",
                    format!("'{reference}': a dataset is name or name@version"),
                ));
            }
        }
        Input::Model(uri) => {
            if !uri.starts_with("models:/") || uri.len() > 500 {
                return Err(at(step, "inputs", format!("'{uri}' is not a models:/ URI")));
            }
        }
    }
    Ok(input)
}

fn parse_trigger(item: &Value) -> Result<Trigger, String> {
    let Value::Object(map) = item else {
        return Err(at(
            "",
            "triggers",
            "each trigger is {schedule|dataset|model|alert: ...}",
        ));
    };
    let (Some((key, value)), 1) = (map.iter().next(), map.len()) else {
        return Err(at(
            "",
            "triggers",
            "each trigger has exactly one of schedule, dataset, model, alert",
        ));
    };
    let text = value
        .as_str()
        .ok_or_else(|| at("", "triggers", format!("'{key}' must be a string")))?
        .to_string();
    match key.as_str() {
        "schedule" => {
            super::schedule::Schedule::parse(&text)
                .map_err(|e| at("", "triggers", format!("schedule '{text}': {e}")))?;
            Ok(Trigger::Schedule(text))
        }
        "dataset" => {
            crate::data::pointer::check_name(&text).map_err(|e| at("", "triggers", e))?;
            Ok(Trigger::Dataset(text))
        }
        "model" => Ok(Trigger::Model(text)),
        "alert" => Ok(Trigger::Alert(text)),
        other => Err(at(
            "",
            "triggers",
            format!("unknown trigger '{other}' (schedule, dataset, model, alert)"),
        )),
    }
}

/// The parent directories of a path, nearest last (`a/b/c` -> `a`, `a/b`).
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(at, _)| &path[..at])
}

/// Every declared output and who writes it, indexed so overlaps are found per path, not per pair: an output,
/// and each directory above an output with the outputs below it.
struct Producers<'a> {
    exact: BTreeMap<&'a str, &'a str>,
    below: BTreeMap<&'a str, Vec<(&'a str, &'a str)>>,
}

impl<'a> Producers<'a> {
    /// Who writes what `path` names or what lies inside it or around it: (producer, output).
    fn overlapping(&self, path: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut found: Vec<(&str, &str)> = Vec::new();
        if let Some(producer) = self.exact.get(path) {
            found.push((producer, path));
        }
        for parent in parents(path) {
            if let Some(producer) = self.exact.get(parent) {
                found.push((producer, parent));
            }
        }
        found.extend(self.below.get(path).into_iter().flatten().copied());
        found
    }
}

/// Each step's dependencies: the producers of the paths it reads, and `after`.
fn dependencies(steps: &[Step]) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let names: BTreeSet<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let mut producers = Producers {
        exact: BTreeMap::new(),
        below: BTreeMap::new(),
    };
    for step in steps {
        for output in &step.outputs {
            let output = output.trim_end_matches('/');
            if let Some((other, claimed)) = producers.overlapping(output).first() {
                return Err(at(
                    &step.name,
                    "outputs",
                    format!(
                        "'{output}' overlaps '{claimed}', an output of step '{other}' (each output has one producer)"
                    ),
                ));
            }
            producers.exact.insert(output, &step.name);
            for parent in parents(output) {
                producers.below.entry(parent).or_default().push((&step.name, output));
            }
        }
    }
    let mut dependencies = BTreeMap::new();
    for step in steps {
        let mut needs = BTreeSet::new();
        for input in &step.inputs {
            if let Input::Path(path) = input {
                for (producer, _) in producers.overlapping(path.trim_end_matches('/')) {
                    if producer != step.name {
                        needs.insert(producer.to_string());
                    }
                }
            }
        }
        for other in &step.after {
            if !names.contains(other.as_str()) {
                return Err(at(
                    &step.name,
                    "after",
                    format!("'{other}' is not a step of this pipeline"),
                ));
            }
            needs.insert(other.clone());
        }
        if needs.contains(&step.name) {
            return Err(at(&step.name, "after", "a step cannot run after itself"));
        }
        dependencies.insert(step.name.clone(), needs);
    }
    Ok(dependencies)
}

/// The steps in an order where each comes after its dependencies (ties by name); a cycle is named.
fn topological_order(steps: &[Step], dependencies: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<String>, String> {
    let mut done: Vec<String> = Vec::new();
    let mut remaining: BTreeSet<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .copied()
            .filter(|name| dependencies[*name].iter().all(|d| done.contains(d)))
            .collect();
        if ready.is_empty() {
            return Err(at(
                "",
                "steps",
                format!(
                    "the steps depend on each other in a cycle (each needs the next): {}",
                    cycle(&remaining, dependencies)
                ),
            ));
        }
        for name in ready {
            remaining.remove(name);
            done.push(name.to_string());
        }
    }
    Ok(done)
}

/// One cycle among `remaining`, as `a -> b -> a`.
fn cycle(remaining: &BTreeSet<&str>, dependencies: &BTreeMap<String, BTreeSet<String>>) -> String {
    let Some(start) = remaining.iter().next() else {
        return String::new();
    };
    let mut path = vec![start.to_string()];
    loop {
        let last = path.last().expect("not empty");
        let Some(next) = dependencies[last].iter().find(|d| remaining.contains(d.as_str())) else {
            return path.join(" -> ");
        };
        if let Some(position) = path.iter().position(|p| p == next) {
            let mut cycle: Vec<String> = path[position..].to_vec();
            cycle.push(next.clone());
            return cycle.join(" -> ");
        }
        path.push(next.clone());
    }
}
