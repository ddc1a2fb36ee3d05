//! Accumulates SQL text and its bound values; placeholders are `$1, $2, ...`, which both SQLite and
//! PostgreSQL accept.

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// Text.
    Text(String),
    /// 64-bit integer.
    Integer(i64),
    /// Double.
    Real(f64),
    /// An absent text value (SQL NULL), bound like the others so a statement's text stays the same.
    NullText,
}

/// SQL text plus the values for its placeholders, in order.
#[derive(Debug, Default, Clone)]
pub struct SqlBuilder {
    /// The SQL text built so far.
    pub sql: String,
    /// Bound values; `$n` refers to `values[n - 1]`.
    pub values: Vec<SqlValue>,
}

impl SqlBuilder {
    /// Starts with the given SQL text.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            values: Vec::new(),
        }
    }

    /// Records a value and returns its placeholder.
    pub fn bind(&mut self, value: SqlValue) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    /// Binds a text value.
    pub fn bind_text(&mut self, value: &str) -> String {
        self.bind(SqlValue::Text(value.to_string()))
    }

    /// Binds text that may be absent (NULL).
    pub fn bind_optional_text(&mut self, value: Option<&str>) -> String {
        self.bind(value.map_or(SqlValue::NullText, |text| SqlValue::Text(text.to_string())))
    }

    /// Binds an integer.
    pub fn bind_integer(&mut self, value: i64) -> String {
        self.bind(SqlValue::Integer(value))
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) {
        self.sql.push_str(text);
    }

    /// Appends `(` placeholders for each value `)`.
    pub fn push_text_list(&mut self, values: &[String]) {
        self.sql.push('(');
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.sql.push_str(", ");
            }
            let placeholder = self.bind_text(value);
            self.sql.push_str(&placeholder);
        }
        self.sql.push(')');
    }
}
