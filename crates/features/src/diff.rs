//! What applying new definitions would change, object by object, shown before it is applied.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::definitions::Definitions;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `+` added, `-` removed, `~` changed.
    pub change: char,
    /// `entity`, `source`, `push source`, `request source`, `feature view`, `on-demand feature view` or `feature service`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// For a change: the fields that differ, each with its old and new value when they are short.
    pub fields: Vec<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.change, self.kind, self.name)?;
        if !self.fields.is_empty() {
            write!(f, " ({})", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// The changes from `old` (nothing applied yet when `None`) to `new`; the project name is not compared.
pub fn diff(old: Option<&Definitions>, new: &Definitions) -> Vec<Change> {
    let empty = Definitions::default();
    let old = old.unwrap_or(&empty);
    let mut changes = Vec::new();
    compare("entity", &old.entities, &new.entities, &mut changes);
    compare("source", &old.sources, &new.sources, &mut changes);
    compare("push source", &old.push_sources, &new.push_sources, &mut changes);
    compare(
        "request source",
        &old.request_sources,
        &new.request_sources,
        &mut changes,
    );
    compare("feature view", &old.views, &new.views, &mut changes);
    compare(
        "on-demand feature view",
        &old.on_demand_views,
        &new.on_demand_views,
        &mut changes,
    );
    compare("feature service", &old.services, &new.services, &mut changes);
    changes
}

fn compare<T: Serialize>(
    kind: &'static str,
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    changes: &mut Vec<Change>,
) {
    for (name, item) in new {
        match old.get(name) {
            None => changes.push(Change {
                change: '+',
                kind,
                name: name.clone(),
                fields: Vec::new(),
            }),
            Some(before) => {
                let (a, b) = (to_value(before), to_value(item));
                if a != b {
                    let fields = match (&a, &b) {
                        (Value::Object(a), Value::Object(b)) => b
                            .iter()
                            .filter(|(field, value)| a.get(*field) != Some(value))
                            .map(|(field, value)| shown(field, a.get(field).unwrap_or(&Value::Null), value))
                            .collect(),
                        _ => vec!["value".to_string()],
                    };
                    changes.push(Change {
                        change: '~',
                        kind,
                        name: name.clone(),
                        fields,
                    });
                }
            }
        }
    }
    for name in old.keys().filter(|name| !new.contains_key(*name)) {
        changes.push(Change {
            change: '-',
            kind,
            name: name.clone(),
            fields: Vec::new(),
        });
    }
}

/// A changed field, with `old -> new` when both are short enough to read on one line.
fn shown(field: &str, old: &Value, new: &Value) -> String {
    if field == "features"
        && let (Some(before), Some(after)) = (named(old), named(new))
    {
        // A view's features: which were added, removed, or changed type or place.
        let mut parts = Vec::new();
        for (position, (name, dtype)) in after.iter().enumerate() {
            match before.iter().position(|(n, _)| n == name) {
                None => parts.push(format!("+{name}")),
                Some(at) if before[at].1 != *dtype => parts.push(format!("{name}: {} -> {dtype}", before[at].1)),
                Some(at) if at != position => parts.push(format!("{name} moved")),
                Some(_) => {}
            }
        }
        for (name, _) in before.iter().filter(|(n, _)| !after.iter().any(|(a, _)| a == n)) {
            parts.push(format!("-{name}"));
        }
        return format!("features: {}", parts.join(", "));
    }
    let (old, new) = (old.to_string(), new.to_string());
    if old.len() + new.len() <= 80 {
        format!("{field}: {old} -> {new}")
    } else {
        field.to_string()
    }
}

/// A list of `{name, dtype}` objects as (name, dtype) pairs.
fn named(value: &Value) -> Option<Vec<(String, String)>> {
    value
        .as_array()?
        .iter()
        .map(|item| {
            let dtype = item["dtype"].as_str()?;
            // A computed feature changes with its expression too.
            let shown = match item["expression"].as_str() {
                Some(expression) => format!("{dtype} = {expression}"),
                None => dtype.to_string(),
            };
            Some((item["name"].as_str()?.to_string(), shown))
        })
        .collect()
}

fn to_value<T: Serialize>(item: &T) -> Value {
    serde_json::to_value(item).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn additions_removals_and_changed_fields_are_named() {
        let base = "entities: [{name: driver, join_keys: [driver_id]}]
sources: [{name: s, path: s.parquet, timestamp_field: t}]
feature_views: [{name: v, entities: [driver], ttl: 1h, source: s, schema: [{name: f, dtype: int64}]}]";
        let old = Definitions::from_yaml(base, Path::new("/"), "old").unwrap();
        let new = Definitions::from_yaml(
            &format!(
                "{}\nfeature_services: [{{name: svc, features: [v]}}]",
                base.replace("1h", "2h")
            ),
            Path::new("/"),
            "new",
        )
        .unwrap();
        let shown: Vec<String> = diff(Some(&old), &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["~ feature view v (ttl_seconds: 3600 -> 7200)", "+ feature service svc"]
        );
        let grown = Definitions::from_yaml(
            &base.replace(
                "{name: f, dtype: int64}",
                "{name: g, dtype: float64}, {name: f, dtype: float32}",
            ),
            Path::new("/"),
            "grown",
        )
        .unwrap();
        let shown: Vec<String> = diff(Some(&old), &grown).iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["~ feature view v (features: +g, f: Int64 -> Float32)"]);
        assert!(diff(Some(&new), &new).is_empty());
        assert_eq!(diff(None, &old).len(), 3);
    }
}
