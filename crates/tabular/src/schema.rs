//! Comparing the columns of two tables by name.

use arrow_schema::DataType;
use serde::Serialize;

use crate::kind::ValueKind;

/// A column whose type differs between two tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retyped {
    /// Column name.
    pub name: String,
    /// Type in the reference table.
    pub reference: String,
    /// Type in the current table.
    pub current: String,
    /// False when the kind of values changed (say numbers to text), which makes the columns incomparable; true for
    /// changes within a kind (integer to float).
    pub comparable: bool,
}

/// How the current table's columns differ from the reference's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchemaDiff {
    /// In the reference, not in the current table.
    pub missing: Vec<String>,
    /// In the current table, not in the reference.
    pub extra: Vec<String>,
    /// In both with different types.
    pub retyped: Vec<Retyped>,
}

impl SchemaDiff {
    /// Compares two lists of `(name, type)`, keeping the reference order.
    pub fn between(reference: &[(String, DataType)], current: &[(String, DataType)]) -> SchemaDiff {
        let mut diff = SchemaDiff::default();
        for (name, reference_type) in reference {
            match current.iter().find(|(n, _)| n == name) {
                None => diff.missing.push(name.clone()),
                Some((_, current_type)) if !same_type(reference_type, current_type) => diff.retyped.push(Retyped {
                    name: name.clone(),
                    reference: reference_type.to_string(),
                    current: current_type.to_string(),
                    comparable: ValueKind::of(reference_type) == ValueKind::of(current_type),
                }),
                Some(_) => {}
            }
        }
        diff.extra = current
            .iter()
            .filter(|(name, _)| !reference.iter().any(|(n, _)| n == name))
            .map(|(name, _)| name.clone())
            .collect();
        diff
    }

    /// True when the tables have the same columns with the same types.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.retyped.is_empty()
    }

    /// Columns that cannot be compared: missing ones and those whose kind of values changed.
    pub fn incomparable(&self) -> Vec<String> {
        let mut names = self.missing.clone();
        names.extend(self.retyped.iter().filter(|r| !r.comparable).map(|r| r.name.clone()));
        names
    }

    /// One line per difference, for people.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.missing.is_empty() {
            lines.push(format!("missing from the current data: {}", self.missing.join(", ")));
        }
        if !self.extra.is_empty() {
            lines.push(format!("not in the reference: {}", self.extra.join(", ")));
        }
        for retyped in &self.retyped {
            lines.push(format!(
                "column '{}' changed type from {} to {}",
                retyped.name, retyped.reference, retyped.current
            ));
        }
        lines
    }
}

/// Same type, ignoring dictionary encoding and string layout, which do not change values.
fn same_type(a: &DataType, b: &DataType) -> bool {
    fn plain(t: &DataType) -> &DataType {
        match t {
            DataType::Dictionary(_, value) => plain(value),
            DataType::LargeUtf8 | DataType::Utf8View => &DataType::Utf8,
            other => other,
        }
    }
    plain(a) == plain(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_extra_and_retyped_columns() {
        let reference = vec![
            ("a".to_string(), DataType::Int64),
            ("b".to_string(), DataType::Utf8),
            ("c".to_string(), DataType::Float64),
            ("d".to_string(), DataType::Utf8),
        ];
        let current = vec![
            ("a".to_string(), DataType::Float64),
            ("b".to_string(), DataType::Int64),
            (
                "d".to_string(),
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            ),
            ("e".to_string(), DataType::Boolean),
        ];
        let diff = SchemaDiff::between(&reference, &current);
        assert_eq!(diff.missing, vec!["c"]);
        assert_eq!(diff.extra, vec!["e"]);
        assert_eq!(diff.retyped.len(), 2);
        assert!(diff.retyped[0].comparable, "int to float stays numeric");
        assert!(!diff.retyped[1].comparable, "text to numbers is not comparable");
        assert_eq!(diff.incomparable(), vec!["c", "b"]);
        assert!(
            diff.describe()
                .iter()
                .any(|l| l.contains("'b' changed type from Utf8 to Int64"))
        );
    }
}
