//! Spans from other GenAI instrumentations read as MLflow spans, as MLflow's server translates them when it
//! stores them: the span type, inputs, outputs, token usage, model and provider are filled in (never
//! overwritten) from the OpenInference, OpenTelemetry GenAI and Traceloop (OpenLLMetry) conventions, in
//! that order of preference.

use super::messages::{Any, AnyValue, KeyValue, KeyValueList};

/// One convention's attribute names.
struct Convention {
    kind_key: &'static str,
    kinds: &'static [(&'static str, &'static str)],
    input_tokens: &'static str,
    output_tokens: &'static str,
    total_tokens: Option<&'static str>,
    cache_read_tokens: Option<&'static str>,
    cache_creation_tokens: Option<&'static str>,
    /// Exact keys, or prefixes with `{n}` standing for a number (Traceloop's indexed prompts).
    inputs: &'static [&'static str],
    outputs: &'static [&'static str],
    models: &'static [&'static str],
    provider: Option<&'static str>,
}

const CONVENTIONS: [Convention; 3] = [
    Convention {
        kind_key: "openinference.span.kind",
        kinds: &[
            ("TOOL", "TOOL"),
            ("CHAIN", "CHAIN"),
            ("LLM", "LLM"),
            ("RETRIEVER", "RETRIEVER"),
            ("EMBEDDING", "EMBEDDING"),
            ("AGENT", "AGENT"),
            ("RERANKER", "RERANKER"),
            ("UNKNOWN", "UNKNOWN"),
            ("GUARDRAIL", "GUARDRAIL"),
            ("EVALUATOR", "EVALUATOR"),
        ],
        input_tokens: "llm.token_count.prompt",
        output_tokens: "llm.token_count.completion",
        total_tokens: Some("llm.token_count.total"),
        cache_read_tokens: Some("llm.token_count.prompt_details.cache_read"),
        cache_creation_tokens: Some("llm.token_count.prompt_details.cache_write"),
        inputs: &["input.value"],
        outputs: &["output.value"],
        models: &[
            "llm.response.model_name",
            "llm.model_name",
            "llm.request.model_name",
            "embedding.model_name",
        ],
        provider: Some("llm.provider"),
    },
    Convention {
        kind_key: "gen_ai.operation.name",
        kinds: &[
            ("chat", "CHAT_MODEL"),
            ("create_agent", "AGENT"),
            ("embeddings", "EMBEDDING"),
            ("execute_tool", "TOOL"),
            ("generate_content", "LLM"),
            ("invoke_agent", "AGENT"),
            ("text_completion", "LLM"),
            ("response", "LLM"),
        ],
        input_tokens: "gen_ai.usage.input_tokens",
        output_tokens: "gen_ai.usage.output_tokens",
        total_tokens: None,
        cache_read_tokens: Some("gen_ai.usage.cache_read.input_tokens"),
        cache_creation_tokens: Some("gen_ai.usage.cache_write.input_tokens"),
        inputs: &["gen_ai.input.messages", "gen_ai.tool.call.arguments"],
        outputs: &["gen_ai.output.messages", "gen_ai.tool.call.result"],
        models: &["gen_ai.response.model", "gen_ai.request.model"],
        provider: Some("gen_ai.provider.name"),
    },
    Convention {
        kind_key: "traceloop.span.kind",
        kinds: &[
            ("workflow", "WORKFLOW"),
            ("task", "TASK"),
            ("agent", "AGENT"),
            ("tool", "TOOL"),
            ("unknown", "UNKNOWN"),
        ],
        input_tokens: "gen_ai.usage.prompt_tokens",
        output_tokens: "gen_ai.usage.completion_tokens",
        total_tokens: Some("llm.usage.total_tokens"),
        cache_read_tokens: None,
        cache_creation_tokens: None,
        inputs: &[
            "traceloop.entity.input",
            "gen_ai.prompt.{n}.content",
            "gen_ai.completion.{n}.tool_calls.{n}.arguments",
        ],
        outputs: &["traceloop.entity.output", "gen_ai.completion.{n}.content"],
        models: &[],
        provider: Some("gen_ai.system"),
    },
];

/// Whether `key` matches a pattern in which `{n}` stands for one or more digits.
fn matches(pattern: &str, key: &str) -> bool {
    let mut rest = key;
    for (index, part) in pattern.split("{n}").enumerate() {
        if index > 0 {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return false;
            }
            rest = &rest[digits..];
        }
        match rest.strip_prefix(part) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// A value worth copying: not empty, not JSON `null`, `{}`, `[]`, `""`, `0` or `false` (as MLflow skips them).
fn meaningful(value: &AnyValue) -> bool {
    match &value.value {
        None => false,
        Some(Any::String(text)) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Null | serde_json::Value::Bool(false)) => false,
            Ok(serde_json::Value::Bool(true)) => true,
            Ok(serde_json::Value::String(inner)) => !inner.is_empty(),
            Ok(serde_json::Value::Array(items)) => !items.is_empty(),
            Ok(serde_json::Value::Object(entries)) => !entries.is_empty(),
            Ok(serde_json::Value::Number(number)) => number.as_f64() != Some(0.0),
            Err(_) => !text.is_empty(),
        },
        Some(Any::Array(array)) => !array.values.is_empty(),
        Some(Any::KeyValues(list)) => !list.values.is_empty(),
        Some(Any::Bool(flag)) => *flag,
        Some(Any::Int(number)) => *number != 0,
        Some(Any::Double(number)) => *number != 0.0,
        Some(Any::Bytes(bytes)) => !bytes.is_empty(),
    }
}

fn find<'a>(attributes: &'a [KeyValue], patterns: &[&str]) -> Option<&'a AnyValue> {
    patterns.iter().find_map(|pattern| {
        attributes
            .iter()
            .find(|entry| matches(pattern, &entry.key))
            .and_then(|entry| entry.value.as_ref())
            .filter(|value| meaningful(value))
    })
}

fn text_of(value: &AnyValue) -> Option<String> {
    match &value.value {
        Some(Any::String(text)) => Some(match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::String(inner)) => inner,
            _ => text.clone(),
        }),
        _ => None,
    }
}

fn integer_of(value: &AnyValue) -> Option<i64> {
    match &value.value {
        Some(Any::Int(number)) => Some(*number),
        Some(Any::Double(number)) if number.fract() == 0.0 && number.is_finite() => Some(*number as i64),
        Some(Any::String(text)) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|count| *count >= 0)
}

fn has(attributes: &[KeyValue], key: &str) -> bool {
    attributes.iter().any(|entry| entry.key == key)
}

fn text_value(text: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Any::String(text)),
    })
}

fn int_entry(key: &str, count: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Any::Int(count)),
        }),
    }
}

/// Fills in MLflow's span attributes from the conventions a span was written in.
pub fn translate(attributes: &mut Vec<KeyValue>) {
    let mut added = Vec::new();
    let current_type = attributes
        .iter()
        .find(|entry| entry.key == "mlflow.spanType")
        .and_then(|entry| entry.value.as_ref())
        .and_then(text_of);
    if current_type.as_deref().is_none_or(|kind| kind == "UNKNOWN")
        && let Some(kind) = CONVENTIONS.iter().find_map(|convention| {
            let value = find(attributes, &[convention.kind_key]).and_then(text_of)?;
            convention
                .kinds
                .iter()
                .find(|(name, _)| *name == value)
                .map(|(_, kind)| *kind)
        })
    {
        attributes.retain(|entry| entry.key != "mlflow.spanType");
        added.push(KeyValue {
            key: "mlflow.spanType".into(),
            value: text_value(kind.to_string()),
        });
    }
    for (key, pick) in [
        (
            "mlflow.spanInputs",
            (|c: &Convention| c.inputs) as fn(&Convention) -> &'static [&'static str],
        ),
        ("mlflow.spanOutputs", |c: &Convention| c.outputs),
        ("mlflow.llm.model", |c: &Convention| c.models),
    ] {
        if has(attributes, key) {
            continue;
        }
        if let Some(value) = CONVENTIONS
            .iter()
            .find_map(|convention| find(attributes, pick(convention)))
        {
            added.push(KeyValue {
                key: key.into(),
                value: Some(value.clone()),
            });
        }
    }
    if !has(attributes, "mlflow.llm.provider")
        && let Some(value) = CONVENTIONS
            .iter()
            .find_map(|convention| convention.provider.and_then(|key| find(attributes, &[key])))
    {
        added.push(KeyValue {
            key: "mlflow.llm.provider".into(),
            value: Some(value.clone()),
        });
    }
    if !has(attributes, "mlflow.chat.tokenUsage") {
        let count = |key: Option<&str>| key.and_then(|key| find(attributes, &[key])).and_then(integer_of);
        for convention in &CONVENTIONS {
            let input = count(Some(convention.input_tokens));
            let output = count(Some(convention.output_tokens));
            let mut total = count(convention.total_tokens);
            if total.is_none()
                && let (Some(input), Some(output)) = (input, output)
            {
                total = Some(input.saturating_add(output));
            }
            if input.is_none() && output.is_none() && total.is_none() {
                continue;
            }
            let mut usage = Vec::new();
            for (key, value) in [
                ("input_tokens", input),
                ("output_tokens", output),
                ("total_tokens", total),
                ("cache_read_input_tokens", count(convention.cache_read_tokens)),
                ("cache_creation_input_tokens", count(convention.cache_creation_tokens)),
            ] {
                if let Some(value) = value {
                    usage.push(int_entry(key, value));
                }
            }
            added.push(KeyValue {
                key: "mlflow.chat.tokenUsage".into(),
                value: Some(AnyValue {
                    value: Some(Any::KeyValues(KeyValueList { values: usage })),
                }),
            });
            break;
        }
    }
    attributes.extend(added);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: text_value(value.into()),
        }
    }

    fn get<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
        attributes
            .iter()
            .find(|e| e.key == key)
            .and_then(|e| e.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn conventions_fill_in_mlflows_attributes() {
        let mut open_inference = vec![
            text("openinference.span.kind", "TOOL"),
            text("input.value", "Hello, world!"),
            KeyValue {
                key: "llm.token_count.prompt".into(),
                value: Some(AnyValue {
                    value: Some(Any::Int(100)),
                }),
            },
            text("llm.token_count.completion", "50"),
            text("llm.model_name", "gpt-4o"),
        ];
        translate(&mut open_inference);
        assert_eq!(
            get(&open_inference, "mlflow.spanType"),
            Some(&Any::String("TOOL".into()))
        );
        assert_eq!(
            get(&open_inference, "mlflow.spanInputs"),
            Some(&Any::String("Hello, world!".into()))
        );
        assert_eq!(
            get(&open_inference, "mlflow.llm.model"),
            Some(&Any::String("gpt-4o".into()))
        );
        let Some(Any::KeyValues(usage)) = get(&open_inference, "mlflow.chat.tokenUsage") else {
            panic!()
        };
        let usage: Vec<(String, Option<Any>)> = usage
            .values
            .iter()
            .map(|e| (e.key.clone(), e.value.clone().and_then(|v| v.value)))
            .collect();
        assert_eq!(
            usage,
            vec![
                ("input_tokens".into(), Some(Any::Int(100))),
                ("output_tokens".into(), Some(Any::Int(50))),
                ("total_tokens".into(), Some(Any::Int(150))),
            ]
        );
        let mut traceloop = vec![
            text("traceloop.span.kind", "tool"),
            text("gen_ai.completion.0.content", "done"),
        ];
        translate(&mut traceloop);
        assert_eq!(get(&traceloop, "mlflow.spanType"), Some(&Any::String("TOOL".into())));
        assert_eq!(get(&traceloop, "mlflow.spanOutputs"), Some(&Any::String("done".into())));
        // What the client set stands.
        let mut own = vec![
            text("mlflow.spanType", "\"LLM\""),
            text("gen_ai.operation.name", "chat"),
            text("mlflow.spanInputs", "x"),
        ];
        translate(&mut own);
        assert_eq!(get(&own, "mlflow.spanType"), Some(&Any::String("\"LLM\"".into())));
        assert_eq!(own.iter().filter(|e| e.key == "mlflow.spanInputs").count(), 1);
        assert!(matches("gen_ai.prompt.{n}.content", "gen_ai.prompt.12.content"));
        assert!(!matches("gen_ai.prompt.{n}.content", "gen_ai.prompt..content"));
        assert!(!matches("gen_ai.prompt.{n}.content", "gen_ai.prompt.1.contents"));
    }
}
