//! Request-time feature expressions: small typed formulas over a view's features and the request's own fields,
//! such as `conv_rate * 100`, `if(trips > 0, fare / trips, 0.0)` or `lower(city)`.
//!
//! An expression is parsed and type-checked once, when definitions are applied (an unknown name, a type
//! mismatch or a result that does not fit the declared type is refused then), and evaluated row by row in
//! training sets, online lookups and serving alike, so a feature means the same in all three.
//!
//! Values are integers, floats, booleans and text. Arithmetic follows NumPy's: `/` always gives a float
//! (IEEE: `x / 0.0` is infinite), `%` takes the divisor's sign, integers mix with floats as floats. A missing
//! input makes the result missing, except in `coalesce`, `is_null` and `if` (a missing condition takes the
//! else branch), and in `and`/`or`, which are three-valued (`false and missing` is false). Integer overflow and
//! an integer `% 0` give a missing value rather than a wrong one.

mod eval;
mod parse;
#[cfg(test)]
mod tests;

use crate::online::FeatureValue;
use crate::value_type::ValueType;

/// The longest expression accepted.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// The deepest nesting accepted (operators and calls inside each other).
pub const MAX_DEPTH: usize = 64;

/// The type of a value inside an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit integer.
    Int,
    /// A 64-bit float.
    Float,
    /// true / false.
    Bool,
    /// UTF-8 text.
    Text,
}

impl Kind {
    /// The kind a feature or request field of this type is read as (`None`: not usable in expressions).
    pub fn of(value_type: ValueType) -> Option<Kind> {
        match value_type {
            ValueType::Int32 | ValueType::Int64 => Some(Kind::Int),
            ValueType::Float32 | ValueType::Float64 => Some(Kind::Float),
            ValueType::Bool => Some(Kind::Bool),
            ValueType::String => Some(Kind::Text),
            ValueType::Bytes | ValueType::UnixTimestamp => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Int => "an integer",
            Kind::Float => "a float",
            Kind::Bool => "a boolean",
            Kind::Text => "text",
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::Float)
    }
}

/// One value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Missing.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// true / false.
    Bool(bool),
    /// Text.
    Text(String),
}

impl Scalar {
    /// A stored feature value read as `kind` (a value of another type is missing).
    pub fn from_feature(value: &FeatureValue, kind: Kind) -> Scalar {
        match (value, kind) {
            (FeatureValue::Int(v), Kind::Int) => Scalar::Int(*v),
            (FeatureValue::Int(v), Kind::Float) => Scalar::Float(*v as f64),
            (FeatureValue::Float32(v), Kind::Float) => Scalar::Float(f64::from(*v)),
            (FeatureValue::Float64(v), Kind::Float) => Scalar::Float(*v),
            (FeatureValue::Bool(v), Kind::Bool) => Scalar::Bool(*v),
            (FeatureValue::Text(v), Kind::Text) => Scalar::Text(v.clone()),
            _ => Scalar::Null,
        }
    }

    /// A request's JSON value read as `kind`, or why it cannot be.
    pub fn from_json(value: &serde_json::Value, kind: Kind) -> Result<Scalar, String> {
        use serde_json::Value;
        Ok(match (value, kind) {
            (Value::Null, _) => Scalar::Null,
            (Value::Number(n), Kind::Int) => match n.as_i64() {
                Some(v) => Scalar::Int(v),
                // A whole float (pandas sends 3.0 once a column has a null) is the integer.
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Scalar::Int(f as i64),
                    _ => return Err(format!("{n} is not an integer")),
                },
            },
            (Value::Number(n), Kind::Float) => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
            (Value::String(s), Kind::Float) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => {
                Scalar::Float(s.parse().unwrap_or(f64::NAN))
            }
            (Value::Bool(b), Kind::Bool) => Scalar::Bool(*b),
            (Value::String(s), Kind::Text) => Scalar::Text(s.clone()),
            (other, kind) => return Err(format!("{other} is not {}", kind.name())),
        })
    }

    /// The value as a feature of type `dtype` (an integer out of an Int32's range is missing).
    pub fn into_feature(self, dtype: ValueType) -> FeatureValue {
        match (self, dtype) {
            (Scalar::Int(v), ValueType::Int64) => FeatureValue::Int(v),
            (Scalar::Int(v), ValueType::Int32) => {
                i32::try_from(v).map_or(FeatureValue::Null, |v| FeatureValue::Int(v.into()))
            }
            (Scalar::Int(v), ValueType::Float32) => FeatureValue::Float32(v as f32),
            (Scalar::Int(v), ValueType::Float64) => FeatureValue::Float64(v as f64),
            (Scalar::Float(v), ValueType::Float32) => FeatureValue::Float32(v as f32),
            (Scalar::Float(v), ValueType::Float64) => FeatureValue::Float64(v),
            (Scalar::Bool(v), ValueType::Bool) => FeatureValue::Bool(v),
            (Scalar::Text(v), ValueType::String) => FeatureValue::Text(v),
            _ => FeatureValue::Null,
        }
    }

    /// The value as a field of type `dtype` holds it: a Float32 rounded to single precision, an Int32 out of
    /// range missing (so a request field means the same online as in a training set's typed column).
    pub fn narrowed(self, dtype: ValueType) -> Scalar {
        match (self, dtype) {
            (Scalar::Float(v), ValueType::Float32) => Scalar::Float(f64::from(v as f32)),
            (Scalar::Int(v), ValueType::Int32) if i32::try_from(v).is_err() => Scalar::Null,
            (other, _) => other,
        }
    }

    fn missing(&self) -> bool {
        match self {
            Scalar::Null => true,
            Scalar::Float(v) => v.is_nan(),
            _ => false,
        }
    }
}

/// Whether a result of `kind` may be stored as a feature of type `dtype`.
pub fn fits(kind: Kind, dtype: ValueType) -> bool {
    matches!(
        (kind, dtype),
        (
            Kind::Int,
            ValueType::Int32 | ValueType::Int64 | ValueType::Float32 | ValueType::Float64
        ) | (Kind::Float, ValueType::Float32 | ValueType::Float64)
            | (Kind::Bool, ValueType::Bool)
            | (Kind::Text, ValueType::String)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Abs,
    Sqrt,
    Exp,
    Ln,
    Log10,
    Pow,
    Floor,
    Ceil,
    Round,
    Min,
    Max,
    Coalesce,
    If,
    IsNull,
    Int,
    Float,
    Lower,
    Upper,
    Length,
    Contains,
    StartsWith,
    EndsWith,
}

impl Func {
    fn named(name: &str) -> Option<Func> {
        Some(match name {
            "abs" => Func::Abs,
            "sqrt" => Func::Sqrt,
            "exp" => Func::Exp,
            "ln" | "log" => Func::Ln,
            "log10" => Func::Log10,
            "pow" => Func::Pow,
            "floor" => Func::Floor,
            "ceil" => Func::Ceil,
            "round" => Func::Round,
            "min" => Func::Min,
            "max" => Func::Max,
            "coalesce" => Func::Coalesce,
            "if" => Func::If,
            "is_null" => Func::IsNull,
            "int" => Func::Int,
            "float" => Func::Float,
            "lower" => Func::Lower,
            "upper" => Func::Upper,
            "length" => Func::Length,
            "contains" => Func::Contains,
            "starts_with" => Func::StartsWith,
            "ends_with" => Func::EndsWith,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
enum Node {
    Literal(Scalar),
    Input(usize, Kind),
    Neg(Box<Node>),
    Not(Box<Node>),
    Binary(Op, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

/// A parsed and type-checked expression.
#[derive(Debug, Clone)]
pub struct Expression {
    root: Node,
    /// The type of its result.
    pub kind: Kind,
    /// The names it reads, in the order of their input slots.
    pub inputs: Vec<String>,
    /// How many steps (nodes) one evaluation takes.
    pub size: usize,
}

impl Expression {
    /// Parses `text`; `resolve` gives the kind of each name it reads (or why the name is unknown). Every name is
    /// given a slot, numbered in order of first use, which [`Expression::evaluate`] reads.
    pub fn parse(text: &str, resolve: &dyn Fn(&str) -> Result<Kind, String>) -> Result<Expression, String> {
        parse::parse(text, resolve)
    }

    /// The value for one row, whose inputs are given by slot.
    pub fn evaluate(&self, inputs: &[Scalar]) -> Scalar {
        eval::evaluate(&self.root, inputs)
    }
}

/// The number of nodes of a tree (bounded in height by the parser).
fn count(node: &Node) -> usize {
    1 + match node {
        Node::Literal(_) | Node::Input(..) => 0,
        Node::Neg(inner) | Node::Not(inner) => count(inner),
        Node::Binary(_, left, right) => count(left) + count(right),
        Node::Call(_, args) => args.iter().map(count).sum(),
    }
}
