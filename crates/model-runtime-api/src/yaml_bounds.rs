//! Bounds on YAML documents read from model directories. YAML aliases copy the node they name when loaded,
//! so a few hundred bytes can expand into billions of nodes, and nesting depth drives recursion when the
//! document is converted and dropped. The document is walked once as events, counting what loading it
//! would build, before it is loaded.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::{Yaml, YamlLoader};

/// The largest `MLmodel` file read, in bytes (MLflow writes a few kilobytes).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// How deep mappings and sequences may nest.
pub const MAX_NESTING_DEPTH: usize = 64;
/// How many nodes the loaded document may hold, aliases expanded.
pub const MAX_EXPANDED_NODES: u64 = 1_000_000;

#[derive(Default)]
struct Counter {
    /// For each open container: its anchor id and the expanded node count when it opened.
    open: Vec<(usize, u64)>,
    /// Expanded size of each anchored node.
    anchored_sizes: HashMap<usize, u64>,
    nodes: u64,
    problem: Option<String>,
}

impl Counter {
    fn add(&mut self, nodes: u64) {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_EXPANDED_NODES && self.problem.is_none() {
            self.problem = Some(format!(
                "it expands to more than {MAX_EXPANDED_NODES} nodes (YAML aliases repeat what they name)"
            ));
        }
    }

    fn close(&mut self) {
        if let Some((anchor, nodes_at_open)) = self.open.pop()
            && anchor > 0
        {
            self.anchored_sizes.insert(anchor, self.nodes - nodes_at_open);
        }
    }
}

impl MarkedEventReceiver for Counter {
    fn on_event(&mut self, event: Event, _mark: Marker) {
        if self.problem.is_some() {
            return;
        }
        match event {
            Event::Scalar(_, _, anchor, _) => {
                self.add(1);
                if anchor > 0 {
                    self.anchored_sizes.insert(anchor, 1);
                }
            }
            Event::Alias(anchor) => {
                let size = self.anchored_sizes.get(&anchor).copied().unwrap_or(1);
                self.add(size);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.add(1);
                let nodes_before = self.nodes - 1;
                self.open.push((anchor, nodes_before));
                if self.open.len() > MAX_NESTING_DEPTH {
                    self.problem = Some(format!("it nests deeper than {MAX_NESTING_DEPTH} levels"));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

/// Refuses documents too large, too deep or expanding too far to load.
pub fn check_yaml_bounds(text: &str) -> Result<(), String> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "it is {} bytes long, more than the {MAX_DOCUMENT_BYTES} accepted",
            text.len()
        ));
    }
    let mut counter = Counter::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut counter, true)
        .map_err(|error| format!("not YAML: {error}"))?;
    match counter.problem {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// Loads the first document of a YAML text as JSON, within the bounds of [`check_yaml_bounds`]; an empty text
/// is `null`.
pub fn load_json(text: &str) -> Result<Value, String> {
    check_yaml_bounds(text)?;
    let documents = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    Ok(documents.first().map(to_json).unwrap_or(Value::Null))
}

/// YAML to JSON: scalars keep their YAML type (MLflow writes plain mappings, lists and scalars).
fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Yaml::Integer(n) => Value::from(*n),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(n) => n.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Real(r) => r.clone(),
                    _ => continue,
                };
                map.insert(key, to_json(value));
            }
            Value::Object(map)
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_depth_and_size_are_bounded() {
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut previous = 'a';
        for name in 'b'..='j' {
            let aliases = vec![format!("*{previous}"); 10].join(", ");
            laughs.push_str(&format!("{name}: &{name} [{aliases}]\n"));
            previous = name;
        }
        assert!(check_yaml_bounds(&laughs).unwrap_err().contains("expands"));
        let deep = format!("{}x{}", "[".repeat(100), "]".repeat(100));
        assert!(check_yaml_bounds(&deep).unwrap_err().contains("nests deeper"));
        assert!(check_yaml_bounds(&"#".repeat(MAX_DOCUMENT_BYTES + 1)).is_err());
        let mlmodel = "flavors:\n  python_function:\n    loader_module: mlflow.xgboost\nbase: &b {k: v}\nsame: *b\n";
        assert!(check_yaml_bounds(mlmodel).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, failure_persistence: None, ..Default::default() })]

        /// MLmodel text made of YAML's structural pieces (anchors, aliases, flow and block nesting) is read or
        /// refused with a reason, never with a panic or an unbounded expansion.
        #[test]
        fn generated_mlmodel_text_never_panics(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("flavors:\n  xgboost: {data: model.json}\n".to_string()),
                    proptest::strategy::Just("[".to_string()),
                    proptest::strategy::Just("]".to_string()),
                    proptest::strategy::Just("{".to_string()),
                    proptest::strategy::Just("}".to_string()),
                    proptest::strategy::Just("&a ".to_string()),
                    proptest::strategy::Just("*a, ".to_string()),
                    proptest::strategy::Just("- ".to_string()),
                    proptest::strategy::Just("\n  ".to_string()),
                    proptest::strategy::Just("key: ".to_string()),
                    "[a-z0-9:,&*!|>\\[\\]{} -]{0,6}",
                ],
                0..300,
            ),
        ) {
            let text = pieces.join("");
            if check_yaml_bounds(&text).is_ok() {
                let _ = crate::ModelDescriptor::parse(std::path::Path::new("/models/m"), &text);
            }
        }
    }
}
