//! JSON text as Python's `json.dumps(value, ensure_ascii=False)` writes it (`", "` and `": "` between items),
//! the form MLflow stores span attributes and assessment values in, so filters written against MLflow's
//! stored text (`span.attributes.model LIKE '%"model"%gpt%'`) match Loopline's the same way.

use serde_json::Value;
use std::fmt::Write;

/// The most nesting levels written; deeper values are written as `null` (inputs are bounded before this).
const MAX_DEPTH: usize = 128;

/// `value` as Python's `json.dumps` (without ASCII escaping) writes it.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("null");
        return;
    }
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(integer), _, _) => {
                let _ = write!(out, "{integer}");
            }
            (None, Some(integer), _) => {
                let _ = write!(out, "{integer}");
            }
            (None, None, Some(float)) => write_float(out, float),
            _ => out.push_str("null"),
        },
        Value::String(text) => out.push_str(&Value::String(text.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_value(out, item, depth + 1);
            }
            out.push(']');
        }
        Value::Object(entries) => {
            out.push('{');
            for (index, (key, item)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_value(out, item, depth + 1);
            }
            out.push('}');
        }
    }
}

/// A float as Python's `repr` writes it for the common cases: always with a fraction or an exponent.
fn write_float(out: &mut String, float: f64) {
    if float.is_nan() {
        out.push_str("NaN");
    } else if float.is_infinite() {
        out.push_str(if float > 0.0 { "Infinity" } else { "-Infinity" });
    } else if float.fract() == 0.0 && float.abs() < 1e16 {
        let _ = write!(out, "{float:.1}");
    } else {
        let _ = write!(out, "{float}");
    }
}

#[cfg(test)]
mod tests {
    use super::dumps;
    use serde_json::json;

    #[test]
    fn separators_and_numbers_follow_python() {
        assert_eq!(dumps(&json!("x")), "\"x\"");
        assert_eq!(dumps(&json!(7)), "7");
        assert_eq!(dumps(&json!(1.5)), "1.5");
        assert_eq!(dumps(&json!(2.0)), "2.0");
        assert_eq!(dumps(&json!(true)), "true");
        assert_eq!(dumps(&json!(null)), "null");
        assert_eq!(
            dumps(&json!({"a": [1, "é"], "b": {"c": false}})),
            "{\"a\": [1, \"é\"], \"b\": {\"c\": false}}"
        );
    }
}
