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

impl KeyPath {
    /// Removes what the path reaches from a payload (`a.b` removes `b` from `a`; `a[].b` from every element
    /// of `a`; `a[1]` the second element).
    pub fn remove_from(&self, payload: &mut Value) {
        remove(payload, &self.steps);
    }

    /// Copies what the path reaches from `from` into `into`, keeping the objects and arrays around it (what
    /// `with_payload: {"include": [...]}` returns); several paths merge into one `into`.
    pub fn copy_into(&self, from: &Value, into: &mut Value) {
        copy(from, into, &self.steps);
    }
}

fn remove(data: &mut Value, steps: &[Step]) {
    let Some((step, rest)) = steps.split_first() else {
        return;
    };
    match (step, data) {
        (Step::Key(key), Value::Object(map)) if rest.is_empty() => {
            map.remove(key);
        }
        (Step::Key(key), Value::Object(map)) => {
            if let Some(inner) = map.get_mut(key) {
                remove(inner, rest);
            }
        }
        (Step::Each, Value::Array(items)) if rest.is_empty() => items.clear(),
        (Step::Each, Value::Array(items)) => items.iter_mut().for_each(|item| remove(item, rest)),
        (Step::Index(index), Value::Array(items)) if rest.is_empty() && *index < items.len() => {
            items.remove(*index);
        }
        (Step::Index(index), Value::Array(items)) => {
            if let Some(item) = items.get_mut(*index) {
                remove(item, rest);
            }
        }
        _ => {}
    }
}

fn copy(from: &Value, into: &mut Value, steps: &[Step]) {
    let Some((step, rest)) = steps.split_first() else {
        *into = from.clone();
        return;
    };
    match (step, from) {
        (Step::Key(key), Value::Object(map)) => {
            let Some(inner) = map.get(key) else {
                return;
            };
            if !into.is_object() {
                *into = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(target) = into {
                let slot = target.entry(key.clone()).or_insert(Value::Null);
                copy(inner, slot, rest);
            }
        }
        (Step::Each, Value::Array(items)) => {
            if !matches!(into, Value::Array(existing) if existing.len() == items.len()) {
                *into = Value::Array(vec![Value::Null; items.len()]);
            }
            if let Value::Array(target) = into {
                for (item, slot) in items.iter().zip(target.iter_mut()) {
                    copy(item, slot, rest);
                }
            }
        }
        (Step::Index(index), Value::Array(items)) => {
            if let Some(item) = items.get(*index) {
                let mut slot = Value::Null;
                copy(item, &mut slot, rest);
                *into = Value::Array(vec![slot]);
            }
        }
        _ => {}
    }
}

/// A reached value: its elements when it is an array and values are flattened, itself otherwise.
fn push_flat<'a>(value: &'a Value, flat: bool, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) if flat => out.extend(items.iter()),
        other => out.push(other),
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
                // An element that is itself an array contributes its elements, as a field's array does.
                items.iter().for_each(|item| push_flat(item, flat, out));
            } else {
                items.iter().for_each(|item| collect(item, rest, flat, out));
            }
        }
        (Step::Index(index), Value::Array(items)) => {
            if let Some(item) = items.get(*index) {
                if last {
                    push_flat(item, flat, out);
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
        assert_eq!(
            values(&payload, "grid[]", true),
            [json!(1), json!(2), json!(3), json!(4)]
        );
        assert_eq!(values(&payload, "grid[0]", true), [json!(1), json!(2)]);
        assert_eq!(values(&payload, "grid[0]", false), [json!([1, 2])]);
        assert_eq!(values(&payload, "nothing", true), [json!(null)]);
        assert!(values(&payload, "name.deeper", true).is_empty());
        let mut payload = json!({"a": {"b": 1, "c": 2}, "arr": [{"v": 1, "w": 2}, {"v": 3}], "x.y": 5, "k": 0});
        let mut included = Value::Null;
        for key in ["a.b", "arr[].v", "\"x.y\""] {
            KeyPath::parse(key).unwrap().copy_into(&payload, &mut included);
        }
        assert_eq!(included, json!({"a": {"b": 1}, "arr": [{"v": 1}, {"v": 3}], "x.y": 5}));
        for key in ["a.b", "arr[].w", "\"x.y\""] {
            KeyPath::parse(key).unwrap().remove_from(&mut payload);
        }
        assert_eq!(payload, json!({"a": {"c": 2}, "arr": [{"v": 1}, {"v": 3}], "k": 0}));
        for bad in ["", "a..b", "a[", "a[x]", "a.", "\"open", "a[0]b"] {
            assert!(KeyPath::parse(bad).is_err(), "{bad}");
        }
    }
}
