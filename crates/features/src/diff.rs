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
    /// `entity`, `source`, `feature view`, `feature service` or `push source`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// For a change: the fields that differ.
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
    compare("feature view", &old.views, &new.views, &mut changes);
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
                            .map(|(field, _)| field.clone())
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
        assert_eq!(shown, ["~ feature view v (ttl_seconds)", "+ feature service svc"]);
        assert!(diff(Some(&new), &new).is_empty());
        assert_eq!(diff(None, &old).len(), 3);
    }
}
