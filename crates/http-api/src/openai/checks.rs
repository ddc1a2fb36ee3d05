//! What the gateway checks in a request before any provider sees it: the shape the endpoint needs, tool-call
//! arguments that are JSON, and no field that would pick a provider's URL or key (those come only from the
//! server's configuration; LiteLLM's `api_base` in a request body is how its keys leaked).

use super::errors::OpenAiError;
use serde_json::{Map, Value};

/// Request fields that would choose where a request goes or with which key, as letters and digits only.
const ROUTING_FIELDS: &[&str] = &[
    "apibase",
    "baseurl",
    "apikey",
    "apiversion",
    "apitype",
    "customllmprovider",
    "organization",
    "azureendpoint",
    "azureadtoken",
    "azureadtokenprovider",
    "awsaccesskeyid",
    "awssecretaccesskey",
    "awssessiontoken",
    "awsregionname",
    "awsbedrockruntimeendpoint",
    "awsstsendpoint",
    "awsrolename",
    "awswebidentitytoken",
    "awsprofilename",
    "vertexcredentials",
    "vertexproject",
    "vertexlocation",
    "headers",
    "extraheaders",
    "defaultheaders",
    "userconfig",
    "litellmparams",
];
/// Roles a chat message may have.
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];
/// The most messages in one request.
const MAX_MESSAGES: usize = 100_000;

/// A field of the request that would choose a provider's URL or key, if it has one.
pub fn routing_field(object: &Map<String, Value>) -> Option<&str> {
    // Any spelling (`api_base`, `apiBase`, `API-BASE `): compared on letters and digits alone.
    object.keys().map(String::as_str).find(|key| {
        let plain: String = key
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        ROUTING_FIELDS.contains(&plain.as_str())
    })
}

/// Why such a field is refused.
pub fn routing_message(field: &str) -> String {
    format!(
        "'{field}' cannot be set in a request: providers, their URLs and keys come from the gateway's configuration."
    )
}

/// Parses a request body into an object with a string `model`.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, OpenAiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| OpenAiError::invalid("body", format!("The body is not valid JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(OpenAiError::invalid("body", "The body must be a JSON object."));
    };
    match object.get("model") {
        Some(Value::String(name)) if !name.is_empty() => {}
        Some(_) => return Err(OpenAiError::invalid("model", "'model' must be a non-empty string.")),
        None => return Err(OpenAiError::invalid("model", "'model' is required.")),
    }
    if let Some(field) = routing_field(&object) {
        let field = field.to_string();
        return Err(OpenAiError::invalid(field.clone(), routing_message(&field)));
    }
    if let Some(stream) = object.get("stream")
        && !stream.is_boolean()
        && !stream.is_null()
    {
        return Err(OpenAiError::invalid("stream", "'stream' must be a boolean."));
    }
    if object.get("stream_options").is_some_and(|options| !options.is_null())
        && object.get("stream").and_then(Value::as_bool) != Some(true)
    {
        return Err(OpenAiError::invalid(
            "stream_options",
            "'stream_options' is only allowed when 'stream' is true.",
        ));
    }
    Ok(object)
}

/// The most output tokens a request may ask for, and the most choices.
const MAX_OUTPUT_TOKENS: u64 = 10_000_000;
const MAX_CHOICES: u64 = 128;

/// `temperature`, `top_p` and the penalties are numbers in OpenAI's ranges; `max_tokens` /
/// `max_completion_tokens` and `n`, when given, are whole numbers in range (a float or a huge
/// number would make the caller's limits reserve nothing, or everything).
pub fn counts(request: &Map<String, Value>) -> Result<(), OpenAiError> {
    // Sampling settings in the ranges OpenAI accepts (a provider would refuse them after a round trip, or
    // worse, take them).
    for (field, least, most) in [
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ] {
        match request.get(field) {
            None | Some(Value::Null) => {}
            Some(value) if value.as_f64().is_some_and(|number| (least..=most).contains(&number)) => {}
            Some(_) => {
                return Err(OpenAiError::invalid(
                    field,
                    format!("'{field}' must be a number from {least} to {most}."),
                ));
            }
        }
    }
    for (field, most) in [
        ("max_tokens", MAX_OUTPUT_TOKENS),
        ("max_completion_tokens", MAX_OUTPUT_TOKENS),
        ("n", MAX_CHOICES),
    ] {
        match request.get(field) {
            None | Some(Value::Null) => {}
            Some(value) if value.as_u64().is_some_and(|count| (1..=most).contains(&count)) => {}
            Some(_) => {
                return Err(OpenAiError::invalid(
                    field,
                    format!("'{field}' must be a whole number from 1 to {most}."),
                ));
            }
        }
    }
    Ok(())
}

/// A chat request: messages with known roles; assistant tool calls whose arguments are JSON text.
pub fn chat(request: &Map<String, Value>) -> Result<(), OpenAiError> {
    counts(request)?;
    let Some(Value::Array(messages)) = request.get("messages") else {
        return Err(OpenAiError::invalid(
            "messages",
            "'messages' must be an array of messages.",
        ));
    };
    if messages.is_empty() {
        return Err(OpenAiError::invalid(
            "messages",
            "'messages' must hold at least one message.",
        ));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(OpenAiError::invalid(
            "messages",
            format!("at most {MAX_MESSAGES} messages"),
        ));
    }
    for (index, message) in messages.iter().enumerate() {
        let at = format!("messages[{index}]");
        let Value::Object(message) = message else {
            return Err(OpenAiError::invalid(at, "Each message must be an object."));
        };
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        if !ROLES.contains(&role) {
            return Err(OpenAiError::invalid(
                format!("{at}.role"),
                format!("'{role}' is not a role; use one of {}.", ROLES.join(", ")),
            ));
        }
        match message.get("content") {
            None | Some(Value::Null) if role == "assistant" => {}
            Some(Value::String(_)) | Some(Value::Array(_)) => {}
            None | Some(Value::Null) => {
                return Err(OpenAiError::invalid(format!("{at}.content"), "'content' is required."));
            }
            Some(_) => {
                return Err(OpenAiError::invalid(
                    format!("{at}.content"),
                    "'content' must be a string or an array of parts.",
                ));
            }
        }
        if role == "tool" && !message.get("tool_call_id").is_some_and(Value::is_string) {
            return Err(OpenAiError::invalid(
                format!("{at}.tool_call_id"),
                "A tool message needs 'tool_call_id'.",
            ));
        }
        if let Some(calls) = message.get("tool_calls").filter(|calls| !calls.is_null()) {
            tool_calls(calls, &at)?;
        }
    }
    if let Some(tools) = request.get("tools").filter(|tools| !tools.is_null()) {
        let Value::Array(tools) = tools else {
            return Err(OpenAiError::invalid("tools", "'tools' must be an array."));
        };
        for (index, tool) in tools.iter().enumerate() {
            let name = tool.pointer("/function/name").and_then(Value::as_str);
            if name.is_none_or(str::is_empty) {
                return Err(OpenAiError::invalid(
                    format!("tools[{index}].function.name"),
                    "Each tool needs a function name.",
                ));
            }
        }
    }
    Ok(())
}

fn tool_calls(calls: &Value, at: &str) -> Result<(), OpenAiError> {
    let Value::Array(calls) = calls else {
        return Err(OpenAiError::invalid(
            format!("{at}.tool_calls"),
            "'tool_calls' must be an array.",
        ));
    };
    for (index, call) in calls.iter().enumerate() {
        let field = format!("{at}.tool_calls[{index}].function.arguments");
        let Some(arguments) = call.pointer("/function/arguments") else {
            return Err(OpenAiError::invalid(field, "A tool call needs 'function.arguments'."));
        };
        let Value::String(arguments) = arguments else {
            return Err(OpenAiError::invalid(
                field,
                "'arguments' must be a string holding JSON.",
            ));
        };
        if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(arguments) {
            return Err(OpenAiError::invalid(
                field,
                format!("'arguments' is not valid JSON: {error}"),
            ));
        }
    }
    Ok(())
}

/// A legacy completion: a prompt.
pub fn completion(request: &Map<String, Value>) -> Result<(), OpenAiError> {
    counts(request)?;
    match request.get("prompt") {
        Some(Value::String(_)) | Some(Value::Array(_)) => Ok(()),
        _ => Err(OpenAiError::invalid("prompt", "'prompt' must be a string or an array.")),
    }
}

/// Embeddings: an input.
pub fn embeddings(request: &Map<String, Value>) -> Result<(), OpenAiError> {
    match request.get("input") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if !items.is_empty() => Ok(()),
        _ => Err(OpenAiError::invalid(
            "input",
            "'input' must be a string or a non-empty array.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn check(body: Value) -> Result<(), String> {
        let object = object(body.to_string().as_bytes()).map_err(|error| error.param.unwrap_or_default())?;
        chat(&object).map_err(|error| error.param.unwrap_or_default())
    }

    #[test]
    fn each_mistake_names_its_field() {
        let user = json!({"role": "user", "content": "hi"});
        assert_eq!(check(json!({"model": "m", "messages": [user]})), Ok(()));
        assert_eq!(check(json!({"messages": [user]})), Err("model".into()));
        assert_eq!(check(json!({"model": "m", "messages": []})), Err("messages".into()));
        assert_eq!(
            check(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})),
            Err("messages[0].role".into())
        );
        assert_eq!(
            check(json!({"model": "m", "messages": [{"role": "user"}]})),
            Err("messages[0].content".into())
        );
        assert_eq!(
            check(json!({"model": "m", "messages": [user], "api_base": "http://evil"})),
            Err("api_base".into())
        );
        assert_eq!(
            check(json!({"model": "m", "messages": [user], "apiBase ": "x"})),
            Err("apiBase ".into())
        );
        assert_eq!(
            check(json!({"model": "m", "messages": [user], "aws_bedrock_runtime_endpoint": "x"})),
            Err("aws_bedrock_runtime_endpoint".into())
        );
        assert_eq!(
            check(json!({"model": "m", "messages": [user], "stream_options": {"include_usage": true}})),
            Err("stream_options".into())
        );
        let bad_call = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"city\": "}}]});
        assert_eq!(
            check(json!({"model": "m", "messages": [user, bad_call]})),
            Err("messages[1].tool_calls[0].function.arguments".into())
        );
        let good_call = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"city\": \"Oslo\"}"}}]});
        let result = json!({"role": "tool", "tool_call_id": "c", "content": "12 C"});
        assert_eq!(
            check(json!({"model": "m", "messages": [user, good_call, result]})),
            Ok(())
        );
        assert_eq!(
            check(json!({"model": "m", "messages": [json!({"role": "tool", "content": "x"})]})),
            Err("messages[0].tool_call_id".into())
        );
        for (field, value) in [
            ("max_tokens", json!(100000.0)),
            ("max_tokens", json!(-1)),
            ("max_tokens", json!(9223372036854775807u64)),
            ("max_completion_tokens", json!("10")),
            ("n", json!(0)),
            ("n", json!(1000)),
            ("temperature", json!(5)),
            ("temperature", json!("hot")),
            ("top_p", json!(-0.1)),
            ("presence_penalty", json!(2.5)),
            ("frequency_penalty", json!(-3)),
        ] {
            let mut body = json!({"model": "m", "messages": [user]});
            body[field] = value;
            assert_eq!(check(body), Err(field.into()));
        }
        assert_eq!(
            check(
                json!({"model": "m", "messages": [user], "max_tokens": 64, "n": 2, "temperature": 2, "top_p": 0.5, "presence_penalty": -2})
            ),
            Ok(())
        );
    }

    proptest! {
        #[test]
        fn any_body_is_answered_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(object) = object(&bytes) {
                let _ = chat(&object);
                let _ = completion(&object);
                let _ = embeddings(&object);
            }
        }

        #[test]
        fn any_message_list_is_checked_without_panicking(roles in proptest::collection::vec("[a-z]{0,9}", 0..6), arguments in ".{0,40}") {
            let messages: Vec<Value> = roles.iter().map(|role| json!({"role": role, "content": "x", "tool_calls": [{"function": {"name": "f", "arguments": arguments}}]})).collect();
            let body = json!({"model": "m", "messages": messages});
            let _ = chat(body.as_object().unwrap());
        }
    }
}
