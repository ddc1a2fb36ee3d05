//! Tool-call arguments: JSON text inside a message (`tool_calls[].function.arguments`, a custom tool's
//! `custom.input`, and the older `function_call.arguments`). A model can put an e-mail address or a card
//! number there as easily as in its prose, so guardrails read them too, as JSON: the text is cut into its
//! tokens, and each string (object keys included, escapes decoded) and each number (its digits, so a card
//! number sent as a number is found) is a text of its own. A redaction replaces only its own token, by a JSON
//! string: everything else (key order, number spellings, duplicate keys, spacing) stays byte for byte, and
//! what the tool receives still parses. Text that is not JSON tokens (a model's mistake, or prose given to a
//! custom tool) is read as one plain text. Arguments given as a JSON value instead of text are read as
//! their JSON text and put back as the value it parses to.

use serde_json::{Map, Value};

/// The arguments of the tool calls of one message, in order.
fn message_arguments<'a>(message: &'a mut Map<String, Value>, out: &mut Vec<&'a mut Value>) {
    for (name, value) in message.iter_mut() {
        match (name.as_str(), value) {
            ("tool_calls", Value::Array(calls)) => {
                for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                    for (kind, field) in call.iter_mut() {
                        match (kind.as_str(), field) {
                            ("function", Value::Object(function)) => out.extend(function.get_mut("arguments")),
                            ("custom", Value::Object(custom)) => out.extend(custom.get_mut("input")),
                            _ => {}
                        }
                    }
                }
            }
            ("function_call", Value::Object(call)) => out.extend(call.get_mut("arguments")),
            _ => {}
        }
    }
}

/// The tool-call arguments of a chat request's messages.
pub fn in_request(body: &mut Map<String, Value>) -> Vec<&mut Value> {
    let mut out = Vec::new();
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for message in messages.iter_mut().filter_map(Value::as_object_mut) {
            message_arguments(message, &mut out);
        }
    }
    out
}

/// The tool-call arguments of a whole chat answer's choices.
pub fn in_answer(answer: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    if let Some(Value::Array(choices)) = answer.get_mut("choices") {
        for choice in choices.iter_mut() {
            if let Some(Value::Object(message)) = choice.get_mut("message") {
                message_arguments(message, &mut out);
            }
        }
    }
    out
}

/// One string or number token of a JSON text: its bytes, and the text guardrails read.
struct Token {
    start: usize,
    end: usize,
    read: String,
    /// What the text was before the check (a changed one is written back).
    was: String,
}

impl Token {
    fn new(start: usize, end: usize, read: String) -> Token {
        Token {
            start,
            end,
            was: read.clone(),
            read,
        }
    }
}

/// The string and number tokens of a JSON text, or `None` when it is not made of JSON tokens. Structure is
/// not checked (a model's unbalanced braces are still read); a string's escapes are decoded (a lone
/// surrogate as U+FFFD, as lenient parsers do).
fn tokens(text: &str) -> Option<Vec<Token>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'}' | b'[' | b']' | b':' | b',' => at += 1,
            b'"' => {
                let (read, end) = string_token(text, at)?;
                found.push(Token::new(at, end, read));
                at = end;
            }
            b'-' | b'0'..=b'9' => {
                let end = at
                    + bytes[at..]
                        .iter()
                        .take_while(|byte| matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                        .count();
                found.push(Token::new(at, end, text[at..end].to_string()));
                at = end;
            }
            _ => {
                let rest = &text[at..];
                let literal = ["true", "false", "null"]
                    .into_iter()
                    .find(|word| rest.starts_with(word))?;
                at += literal.len();
            }
        }
    }
    Some(found)
}

/// The decoded text of the string token starting at `start` (a `"`), and where it ends.
fn string_token(text: &str, start: usize) -> Option<(String, usize)> {
    let mut read = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => return Some((read, start + 1 + offset + 1)),
            '\\' => match chars.next()?.1 {
                'n' => read.push('\n'),
                't' => read.push('\t'),
                'r' => read.push('\r'),
                'b' => read.push('\u{8}'),
                'f' => read.push('\u{c}'),
                'u' => {
                    let mut unit = || -> Option<u32> {
                        let digits: String = (0..4).map(|_| chars.next().map(|(_, c)| c)).collect::<Option<_>>()?;
                        u32::from_str_radix(&digits, 16).ok()
                    };
                    let first = unit()?;
                    let decoded = if (0xd800..0xdc00).contains(&first) {
                        // A pair when a low surrogate follows; otherwise lone.
                        let rest = chars.as_str();
                        match rest.strip_prefix("\\u").and_then(|after| after.get(..4)) {
                            Some(digits) => match u32::from_str_radix(digits, 16) {
                                Ok(second) if (0xdc00..0xe000).contains(&second) => {
                                    for _ in 0..6 {
                                        chars.next();
                                    }
                                    char::from_u32(0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00))
                                }
                                _ => None,
                            },
                            None => None,
                        }
                    } else {
                        char::from_u32(first)
                    };
                    read.push(decoded.unwrap_or('\u{fffd}'));
                }
                other => read.push(other),
            },
            other => read.push(other),
        }
    }
    None
}

/// One call's arguments, taken out for checking.
enum Taken {
    /// JSON tokens of the text.
    Json(String, Vec<Token>, bool),
    /// Not JSON tokens: read as one text.
    Raw(String, bool),
}

/// Arguments taken out of a message or answer, to be read by the guardrails and put back.
pub struct Arguments {
    taken: Vec<Taken>,
}

impl Arguments {
    /// Takes each argument out (leaving it null until [`Arguments::put_back`]).
    pub fn take(from: Vec<&mut Value>) -> Arguments {
        let taken = from
            .into_iter()
            .map(|arguments| {
                let (text, was_text) = match std::mem::take(arguments) {
                    Value::String(text) => (text, true),
                    other => (other.to_string(), false),
                };
                match tokens(&text) {
                    Some(found) => Taken::Json(text, found, was_text),
                    None => Taken::Raw(text, was_text),
                }
            })
            .collect();
        Arguments { taken }
    }

    /// The texts to read: every string and number of JSON arguments, or the whole text.
    pub fn texts(&mut self) -> Vec<&mut String> {
        let mut texts = Vec::new();
        for taken in &mut self.taken {
            match taken {
                Taken::Raw(read, _) => texts.push(read),
                Taken::Json(_, found, _) => texts.extend(found.iter_mut().map(|token| &mut token.read)),
            }
        }
        texts
    }

    /// Writes the arguments back where they were taken from (the same walk, so the same order): unchanged
    /// ones as they came; in changed JSON only the changed tokens are replaced, by JSON strings.
    pub fn put_back(self, into: Vec<&mut Value>) {
        for (arguments, taken) in into.into_iter().zip(self.taken) {
            let (text, was_text) = match taken {
                Taken::Raw(read, was_text) => (read, was_text),
                Taken::Json(text, found, was_text) => {
                    let mut out = String::with_capacity(text.len());
                    let mut at = 0;
                    for token in found.iter().filter(|token| token.read != token.was) {
                        out.push_str(&text[at..token.start]);
                        out.push_str(&Value::String(token.read.clone()).to_string());
                        at = token.end;
                    }
                    out.push_str(&text[at..]);
                    (out, was_text)
                }
            };
            *arguments = if was_text {
                Value::String(text)
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
        }
    }
}
