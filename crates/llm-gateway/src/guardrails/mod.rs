//! Guardrails: named checks a model applies to the text it is sent (its input) and the text it answers (its
//! output). A `pii` guardrail finds personal data and secrets, `prompt_injection` phrases that try to override
//! the instructions, `banned_topics` an operator's patterns, `max_input` an oversized prompt. Each either
//! redacts what it found, blocks the call (400 naming the guardrail) or only records it; every action is
//! counted and traced. Streams are checked as they pass, holding back a short tail so a match split across
//! events is still found (see [`stream`]).

pub mod detect;
pub mod stream;
mod stream_tools;
pub mod texts;
mod tool_args;

use crate::gateway::Endpoint;
use detect::{Entity, Span};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The most guardrails in a configuration, and patterns in one.
const MAX_GUARDRAILS: usize = 100;
/// The most patterns of one `banned_topics` guardrail, and characters of one.
const MAX_PATTERNS: usize = 100;
const MAX_PATTERN_CHARS: usize = 1_000;

/// What a guardrail looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Personal data and secrets.
    Pii,
    /// Attempts to override the instructions (in user and tool messages).
    PromptInjection,
    /// The operator's patterns.
    BannedTopics,
    /// More characters of input than allowed.
    MaxInput,
}

/// What a guardrail does with what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace each match with a placeholder and go on.
    Redact,
    /// Refuse the call (or stop the stream).
    Block,
    /// Only count and trace it.
    Log,
}

impl Action {
    fn label(self) -> &'static str {
        match self {
            Action::Redact => "redacted",
            Action::Block => "blocked",
            Action::Log => "logged",
        }
    }
}

/// Where a guardrail applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The request's text, before any provider sees it.
    Input,
    /// The answer's text, before the caller sees it.
    Output,
}

impl Stage {
    /// Its name in events and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Output => "output",
        }
    }
}

/// One guardrail as the configuration writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailEntry {
    name: String,
    kind: Kind,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    apply_to: Option<Vec<Stage>>,
    #[serde(default)]
    entities: Option<Vec<Entity>>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    max_chars: Option<usize>,
}

/// A checked guardrail.
#[derive(Debug, Clone)]
pub struct Guardrail {
    /// Its name, in events, metrics and refusals.
    pub name: String,
    /// What it looks for.
    pub kind: Kind,
    /// What it does.
    pub action: Action,
    /// Whether it checks the input.
    pub input: bool,
    /// Whether it checks the output.
    pub output: bool,
    entities: Vec<Entity>,
    patterns: Vec<Regex>,
    max_chars: usize,
}

/// Checks the `guardrails` section: names unique, each kind with what it needs.
pub fn check_entries(entries: Vec<Value>) -> Result<Vec<Guardrail>, String> {
    if entries.len() > MAX_GUARDRAILS {
        return Err(format!("guardrails: at most {MAX_GUARDRAILS}"));
    }
    let mut checked: Vec<Guardrail> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let field = format!("guardrails[{index}]");
        let entry: GuardrailEntry = serde_json::from_value(entry).map_err(|error| format!("{field}: {error}"))?;
        if entry.name.is_empty()
            || entry.name.len() > 128
            || !entry
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!("{field}.name: 1 to 128 letters, digits, '-', '_' or '.'"));
        }
        if checked.iter().any(|other| other.name == entry.name) {
            return Err(format!("{field}.name: '{}' is named twice", entry.name));
        }
        checked.push(entry.check(&field)?);
    }
    Ok(checked)
}

impl GuardrailEntry {
    fn check(self, field: &str) -> Result<Guardrail, String> {
        let (default_action, default_stages): (Action, &[Stage]) = match self.kind {
            Kind::Pii | Kind::BannedTopics => (
                if self.kind == Kind::Pii {
                    Action::Redact
                } else {
                    Action::Block
                },
                &[Stage::Input, Stage::Output],
            ),
            Kind::PromptInjection | Kind::MaxInput => (Action::Block, &[Stage::Input]),
        };
        let action = self.action.unwrap_or(default_action);
        let stages = self.apply_to.unwrap_or_else(|| default_stages.to_vec());
        if stages.is_empty() {
            return Err(format!("{field}.apply_to: name input, output or both"));
        }
        let output = stages.contains(&Stage::Output);
        let only_input = matches!(self.kind, Kind::PromptInjection | Kind::MaxInput);
        if only_input && output {
            return Err(format!(
                "{field}.apply_to: a {:?} guardrail checks the input only",
                self.kind
            ));
        }
        if only_input && action == Action::Redact {
            return Err(format!(
                "{field}.action: a {:?} guardrail blocks or logs; it cannot redact",
                self.kind
            ));
        }
        if self.kind != Kind::Pii && self.entities.is_some() {
            return Err(format!("{field}.entities: only for kind pii"));
        }
        if self.kind != Kind::BannedTopics && !self.patterns.is_empty() {
            return Err(format!("{field}.patterns: only for kind banned_topics"));
        }
        if (self.kind == Kind::MaxInput) != self.max_chars.is_some() {
            return Err(format!(
                "{field}.max_chars: required for kind max_input, and only there"
            ));
        }
        if self.max_chars == Some(0) {
            return Err(format!("{field}.max_chars: at least 1"));
        }
        let mut entities = self.entities.unwrap_or_else(|| Entity::ALL.to_vec());
        entities.sort();
        entities.dedup();
        if entities.is_empty() {
            return Err(format!("{field}.entities: name at least one"));
        }
        if self.kind == Kind::BannedTopics && self.patterns.is_empty() {
            return Err(format!(
                "{field}.patterns: a banned_topics guardrail needs at least one pattern"
            ));
        }
        if self.patterns.len() > MAX_PATTERNS {
            return Err(format!("{field}.patterns: at most {MAX_PATTERNS}"));
        }
        let mut patterns = Vec::with_capacity(self.patterns.len());
        for (index, pattern) in self.patterns.iter().enumerate() {
            if pattern.chars().count() > MAX_PATTERN_CHARS {
                return Err(format!(
                    "{field}.patterns[{index}]: at most {MAX_PATTERN_CHARS} characters"
                ));
            }
            let compiled = detect::compile(pattern).map_err(|error| format!("{field}.patterns[{index}]: {error}"))?;
            if compiled.is_match("") {
                return Err(format!("{field}.patterns[{index}]: matches empty text, so every call"));
            }
            patterns.push(compiled);
        }
        Ok(Guardrail {
            name: self.name,
            kind: self.kind,
            action,
            input: stages.contains(&Stage::Input),
            output,
            entities,
            patterns,
            max_chars: self.max_chars.unwrap_or(usize::MAX),
        })
    }
}

/// One guardrail action, for metrics and the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The guardrail's name.
    pub guardrail: String,
    /// `input` or `output`.
    pub stage: &'static str,
    /// `redacted`, `blocked` or `logged`.
    pub action: &'static str,
    /// What was found, by kind, with counts (`email: 2`); never the text itself.
    pub found: BTreeMap<&'static str, u32>,
}

impl Event {
    /// The event as JSON (for a trace).
    pub fn to_json(&self) -> Value {
        serde_json::json!({"guardrail": self.guardrail, "stage": self.stage, "action": self.action, "found": self.found})
    }

    /// What was found, for a message: `email, phone`.
    pub fn found_list(&self) -> String {
        self.found.keys().copied().collect::<Vec<_>>().join(", ")
    }
}

/// A call a guardrail refused.
#[derive(Debug, Clone)]
pub struct Blocked {
    /// The guardrail's name.
    pub guardrail: String,
    /// Where it struck.
    pub stage: Stage,
    /// What it found (kinds, never the text).
    pub found: String,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.stage {
            Stage::Input => "The request was",
            Stage::Output => "The answer was",
        };
        if self.guardrail.is_empty() {
            return write!(formatter, "{what} stopped: {}", self.found);
        }
        write!(
            formatter,
            "{what} blocked by the guardrail '{}' ({})",
            self.guardrail, self.found
        )
    }
}

/// Matches of one guardrail in one text, each with its placeholder and the kind it counts as.
fn matches(guardrail: &Guardrail, text: &str, trusted: bool) -> Vec<(Span, &'static str, &'static str)> {
    match guardrail.kind {
        Kind::Pii => guardrail
            .entities
            .iter()
            .flat_map(|entity| {
                detect::find(*entity, text)
                    .into_iter()
                    .map(|span| (span, entity.placeholder(), entity.name()))
            })
            .collect(),
        Kind::BannedTopics => detect::find_patterns(&guardrail.patterns, text)
            .into_iter()
            .map(|span| (span, "[REDACTED]", "pattern"))
            .collect(),
        Kind::PromptInjection if !trusted => detect::injection(text)
            .map(|kind| {
                vec![(
                    Span {
                        start: 0,
                        end: text.len(),
                    },
                    "",
                    kind,
                )]
            })
            .unwrap_or_default(),
        Kind::PromptInjection | Kind::MaxInput => Vec::new(),
    }
}

/// The guardrails of one model, in the order they apply.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    guardrails: Vec<std::sync::Arc<Guardrail>>,
}

impl Guards {
    /// The guardrails named, in order.
    pub fn new(guardrails: Vec<std::sync::Arc<Guardrail>>) -> Guards {
        Guards { guardrails }
    }

    /// True when no guardrail checks the output.
    pub fn output_free(&self) -> bool {
        !self.guardrails.iter().any(|guardrail| guardrail.output)
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.guardrails.is_empty()
    }

    /// Checks (and redacts in place) a request's text. The events are what was done, the block included.
    pub fn input(&self, endpoint: Endpoint, body: &mut Map<String, Value>) -> (Vec<Event>, Option<Blocked>) {
        let chat = endpoint == Endpoint::ChatCompletions;
        let mut arguments = tool_args::Arguments::take(if chat { tool_args::in_request(body) } else { Vec::new() });
        let outcome = {
            let mut texts = texts::request_texts(endpoint, body);
            texts.extend(arguments.texts().into_iter().map(|text| (text, false)));
            check(
                self.guardrails
                    .iter()
                    .map(AsRef::as_ref)
                    .filter(|guardrail| guardrail.input),
                Stage::Input,
                texts,
            )
        };
        arguments.put_back(if chat { tool_args::in_request(body) } else { Vec::new() });
        outcome
    }

    /// Checks (and redacts in place) a whole answer's text, tool-call arguments included.
    pub fn output(&self, answer: &mut Value) -> (Vec<Event>, Option<Blocked>) {
        let mut arguments = tool_args::Arguments::take(tool_args::in_answer(answer));
        let outcome = {
            let mut texts: Vec<(&mut String, bool)> = texts::answer_texts(answer)
                .into_iter()
                .map(|text| (text, false))
                .collect();
            texts.extend(arguments.texts().into_iter().map(|text| (text, false)));
            check(self.output_guardrails(), Stage::Output, texts)
        };
        arguments.put_back(tool_args::in_answer(answer));
        outcome
    }

    fn output_guardrails(&self) -> impl Iterator<Item = &Guardrail> {
        self.guardrails
            .iter()
            .map(AsRef::as_ref)
            .filter(|guardrail| guardrail.output)
    }

    /// These guardrails followed by those of `other` that are not among them (a fallback model's).
    pub fn with(&self, other: &Guards) -> Guards {
        let mut guardrails = self.guardrails.clone();
        for guardrail in &other.guardrails {
            if !guardrails.iter().any(|known| known.name == guardrail.name) {
                guardrails.push(guardrail.clone());
            }
        }
        Guards { guardrails }
    }
}

/// [`Guards::input`] off the async workers (patterns over a large body take a while): the body back, checked
/// and redacted, with the events and the block. A check that fails refuses the call.
pub async fn checked_input(
    guards: Guards,
    endpoint: Endpoint,
    mut body: Map<String, Value>,
) -> (Map<String, Value>, Vec<Event>, Option<Blocked>) {
    let work = tokio::task::spawn_blocking(move || {
        let (events, blocked) = guards.input(endpoint, &mut body);
        (body, events, blocked)
    });
    work.await
        .unwrap_or_else(|_| (Map::new(), Vec::new(), Some(failed(Stage::Input))))
}

/// [`Guards::output`] off the async workers.
pub async fn checked_output(guards: Guards, mut answer: Value) -> (Value, Vec<Event>, Option<Blocked>) {
    let work = tokio::task::spawn_blocking(move || {
        let (events, blocked) = guards.output(&mut answer);
        (answer, events, blocked)
    });
    work.await
        .unwrap_or_else(|_| (Value::Null, Vec::new(), Some(failed(Stage::Output))))
}

fn failed(stage: Stage) -> Blocked {
    Blocked {
        guardrail: String::new(),
        stage,
        found: "the guardrails' check failed".into(),
    }
}

/// Every guardrail reads the texts as they came (a redaction by one is not what the next one sees, so a
/// placeholder never matches a pattern and a blocking guardrail is never disarmed by a redacting one listed
/// before it); then the first guardrail that blocks refuses, or else every redaction is made.
fn check<'a>(
    guardrails: impl Iterator<Item = &'a Guardrail>,
    stage: Stage,
    mut texts: Vec<(&mut String, bool)>,
) -> (Vec<Event>, Option<Blocked>) {
    let guardrails: Vec<&Guardrail> = guardrails.collect();
    let mut found: Vec<BTreeMap<&'static str, u32>> = vec![BTreeMap::new(); guardrails.len()];
    let mut redactions: Vec<Vec<(Span, &'static str)>> = vec![Vec::new(); texts.len()];
    for (index, guardrail) in guardrails.iter().enumerate() {
        if guardrail.kind == Kind::MaxInput {
            let chars: usize = texts.iter().map(|(text, _)| text.chars().count()).sum();
            if chars > guardrail.max_chars {
                found[index].insert("characters", u32::try_from(chars).unwrap_or(u32::MAX));
            }
            continue;
        }
        for (position, (text, trusted)) in texts.iter().enumerate() {
            for (span, placeholder, kind) in matches(guardrail, text, *trusted) {
                *found[index].entry(kind).or_default() += 1;
                if guardrail.action == Action::Redact {
                    redactions[position].push((span, placeholder));
                }
            }
        }
    }
    let mut events = Vec::new();
    let mut blocked = None;
    for (guardrail, found) in guardrails.iter().zip(found) {
        if found.is_empty() {
            continue;
        }
        let event = Event {
            guardrail: guardrail.name.clone(),
            stage: stage.label(),
            action: guardrail.action.label(),
            found,
        };
        if guardrail.action == Action::Block && blocked.is_none() {
            blocked = Some(Blocked {
                guardrail: guardrail.name.clone(),
                stage,
                found: event.found_list(),
            });
        }
        events.push(event);
    }
    if blocked.is_none() {
        for ((text, _), spans) in texts.iter_mut().zip(redactions.iter_mut()) {
            if !spans.is_empty() {
                **text = detect::redact(text, spans);
            }
        }
    }
    (events, blocked)
}

#[cfg(test)]
mod tests;
