//! Payload key paths: `name`, `address.city`, `locations[].name`, `locations[0].name`, `the."dotted.key"`.

use serde_json::Value;

/// Longest key path accepted, in bytes.
pub const MAX_KEY_LENGTH: usize = 1024;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object's member.
    Key(String),
    /// Every element of an array (`[]`).
    Each,
    /// One element of an array (`[3]`).
    Index(usize),
}

/// A parsed key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    text: String,
    steps: Vec<Step>,
}

impl KeyPath {
    /// Parses a path, answering what is wrong with it otherwise.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the key is empty".into());
        }
        if text.len() > MAX_KEY_LENGTH {
            return Err(format!("the key is longer than {MAX_KEY_LENGTH} bytes"));
        }
        let mut steps = Vec::new();
        let mut rest = text;
        let mut expect_key = true;
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('[') {
                let close = inner.find(']').ok_or_else(|| format!("'{text}': '[' without ']'"))?;
                let index = &inner[..close];
                steps.push(if index.is_empty() {
                    Step::Each
                } else {
                    Step::Index(
                        index
                            .parse()
                            .map_err(|_| format!("'{text}': '[{index}]' is not an array index"))?,
                    )
                });
                rest = &inner[close + 1..];
                expect_key = false;
                continue;
            }
            if !expect_key {
                rest = rest
                    .strip_prefix('.')
                    .ok_or_else(|| format!("'{text}': expected '.' or '[' after ']'"))?;
            }
            if let Some(quoted) = rest.strip_prefix('"') {
                let close = quoted.find('"').ok_or_else(|| format!("'{text}': unclosed '\"'"))?;
                steps.push(Step::Key(quoted[..close].to_string()));
                rest = &quoted[close + 1..];
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                if end == 0 {
                    return Err(format!("'{text}': an empty key between separators"));
                }
                steps.push(Step::Key(rest[..end].to_string()));
                rest = &rest[end..];
            }
            expect_key = false;
            if rest.starts_with('.') && rest.len() == 1 {
                return Err(format!("'{text}': ends with '.'"));
            }
        }
        Ok(KeyPath {
            text: text.to_string(),
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path without a trailing `[]` (a nested condition's key may be written either way).
    pub fn without_trailing_each(&self) -> KeyPath {
        let mut steps = self.steps.clone();
        if steps.len() > 1 && steps.last() == Some(&Step::Each) {
            steps.pop();
        }
        KeyPath {
            text: self.text.trim_end_matches("[]").to_string(),
            steps,
        }
    }

    /// The first key of the path when it is a plain top-level key (what a payload index is keyed by).
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The values the path reaches. With `flat`, an array reached at the end contributes its elements (what
    /// match and range conditions look at); without, the array itself (what emptiness and counts look at).
    pub fn values<'a>(&self, payload: &'a Value, flat: bool, out: &mut Vec<&'a Value>) {
        out.clear();
        collect(payload, &self.steps, flat, out);
    }
}

fn collect<'a>(data: &'a Value, steps: &[Step], flat: bool, out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        return;
    };
    let last = rest.is_empty();
    match (step, data) {
        (Step::Key(key), Value::Object(map)) => {
            if let Some(value) = map.get(key) {
                if !last {
                    collect(value, rest, flat, out);
                } else if let (true, Value::Array(items)) = (flat, value) {
                    out.extend(items.iter());
                } else {
                    out.push(value);
                }
            }
        }
        (Step::Each, Value::Array(items)) => {
            if last {
                out.extend(items.iter());
            } else {
                items.iter().for_each(|item| collect(item, rest, flat, out));
            }
        }
        (Step::Index(index), Value::Array(items)) => {
            if let Some(item) = items.get(*index) {
                if last {
                    out.push(item);
                } else {
                    collect(item, rest, flat, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(payload: &Value, key: &str, flat: bool) -> Vec<Value> {
        let mut out = Vec::new();
        KeyPath::parse(key).unwrap().values(payload, flat, &mut out);
        out.into_iter().cloned().collect()
    }

    #[test]
    fn paths_reach_what_qdrant_reaches() {
        let payload = json!({
            "name": "John", "counts": [1, 2, 3], "address": {"city": "New York"},
            "location": [{"name": "home", "counts": [1, 2]}, {"name": "work", "counts": [4]}],
            "the": {"nested.key": "cuckoo"}, "grid": [[1, 2], [3, 4]], "nothing": null
        });
        assert_eq!(values(&payload, "name", true), [json!("John")]);
        assert_eq!(values(&payload, "address.city", true), [json!("New York")]);
        assert_eq!(
            values(&payload, "location[].name", true),
            [json!("home"), json!("work")]
        );
        assert_eq!(values(&payload, "location[1].name", true), [json!("work")]);
        assert!(values(&payload, "location[2].name", true).is_empty());
        assert_eq!(values(&payload, "counts", true), [json!(1), json!(2), json!(3)]);
        assert_eq!(values(&payload, "counts", false), [json!([1, 2, 3])]);
        assert_eq!(
            values(&payload, "location[].counts", true),
            [json!(1), json!(2), json!(4)]
        );
        assert_eq!(values(&payload, "the.\"nested.key\"", true), [json!("cuckoo")]);
        assert_eq!(values(&payload, "grid[][1]", true), [json!(2), json!(4)]);
        assert_eq!(values(&payload, "grid[0][]", true), [json!(1), json!(2)]);
        assert_eq!(values(&payload, "nothing", true), [json!(null)]);
        assert!(values(&payload, "name.deeper", true).is_empty());
        for bad in ["", "a..b", "a[", "a[x]", "a.", "\"open", "a[0]b"] {
            assert!(KeyPath::parse(bad).is_err(), "{bad}");
        }
    }
}
