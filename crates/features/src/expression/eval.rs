//! Evaluating a parsed expression for one row.

use super::*;

fn float(value: &Scalar) -> Option<f64> {
    match value {
        Scalar::Int(v) => Some(*v as f64),
        Scalar::Float(v) => Some(*v),
        _ => None,
    }
}

/// A float rounded to an integer, or missing when it has none (NaN, infinite, out of range).
fn whole(value: f64) -> Scalar {
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&value) {
        Scalar::Int(value as i64)
    } else {
        Scalar::Null
    }
}

/// Python's modulo: the result takes the divisor's sign.
fn python_rem_float(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r == 0.0 {
        // A zero takes the divisor's sign too, as in Python and NumPy.
        0.0f64.copysign(b)
    } else if (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

pub(super) fn evaluate(node: &Node, inputs: &[Scalar]) -> Scalar {
    match node {
        Node::Literal(value) => value.clone(),
        Node::Input(slot, kind) => match inputs.get(*slot) {
            // An integer read where a float is expected is widened (a request may send `3` for a float).
            Some(Scalar::Int(v)) if *kind == Kind::Float => Scalar::Float(*v as f64),
            Some(value) => value.clone(),
            None => Scalar::Null,
        },
        Node::Neg(inner) => match evaluate(inner, inputs) {
            Scalar::Int(v) => v.checked_neg().map_or(Scalar::Null, Scalar::Int),
            Scalar::Float(v) => Scalar::Float(-v),
            _ => Scalar::Null,
        },
        Node::Not(inner) => match evaluate(inner, inputs) {
            Scalar::Bool(v) => Scalar::Bool(!v),
            _ => Scalar::Null,
        },
        Node::Binary(op, left, right) => binary_value(*op, left, right, inputs),
        Node::Call(func, args) => call_value(*func, args, inputs),
    }
}

fn binary_value(op: Op, left: &Node, right: &Node, inputs: &[Scalar]) -> Scalar {
    let a = evaluate(left, inputs);
    if op == Op::And && a == Scalar::Bool(false) {
        return a;
    }
    if op == Op::Or && a == Scalar::Bool(true) {
        return a;
    }
    let b = evaluate(right, inputs);
    match op {
        Op::And | Op::Or => match (&a, &b) {
            (_, Scalar::Bool(v)) if *v == (op == Op::Or) => b,
            (Scalar::Bool(_), Scalar::Bool(_)) => b,
            _ => Scalar::Null,
        },
        _ if a == Scalar::Null || b == Scalar::Null => Scalar::Null,
        Op::Add | Op::Sub | Op::Mul | Op::Rem => match (&a, &b) {
            (Scalar::Int(x), Scalar::Int(y)) => {
                let result = match op {
                    Op::Add => x.checked_add(*y),
                    Op::Sub => x.checked_sub(*y),
                    Op::Mul => x.checked_mul(*y),
                    // `i64::MIN % -1` overflows in the machine but is 0.
                    _ if *y == -1 => Some(0),
                    _ => x
                        .checked_rem(*y)
                        .map(|r| if r != 0 && (r < 0) != (*y < 0) { r + y } else { r }),
                };
                result.map_or(Scalar::Null, Scalar::Int)
            }
            _ => {
                let (Some(x), Some(y)) = (float(&a), float(&b)) else {
                    return Scalar::Null;
                };
                Scalar::Float(match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    _ => {
                        if y == 0.0 {
                            f64::NAN
                        } else {
                            python_rem_float(x, y)
                        }
                    }
                })
            }
        },
        Op::Div => match (float(&a), float(&b)) {
            (Some(x), Some(y)) => Scalar::Float(x / y),
            _ => Scalar::Null,
        },
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let ordering = match (&a, &b) {
                (Scalar::Int(x), Scalar::Int(y)) => Some(x.cmp(y)),
                (Scalar::Text(x), Scalar::Text(y)) => Some(x.cmp(y)),
                (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
                _ => match (float(&a), float(&b)) {
                    (Some(x), Some(y)) => x.partial_cmp(&y),
                    _ => return Scalar::Null,
                },
            };
            use std::cmp::Ordering::{Equal, Greater, Less};
            Scalar::Bool(match (op, ordering) {
                (Op::Ne, None) => true,
                (_, None) => false,
                (Op::Eq, Some(o)) => o == Equal,
                (Op::Ne, Some(o)) => o != Equal,
                (Op::Lt, Some(o)) => o == Less,
                (Op::Le, Some(o)) => o != Greater,
                (Op::Gt, Some(o)) => o == Greater,
                (_, Some(o)) => o != Less,
            })
        }
    }
}

fn call_value(func: Func, args: &[Node], inputs: &[Scalar]) -> Scalar {
    match func {
        Func::Coalesce => {
            for arg in args {
                let value = evaluate(arg, inputs);
                if !value.missing() {
                    return value;
                }
            }
            Scalar::Null
        }
        Func::If => match evaluate(&args[0], inputs) {
            Scalar::Bool(true) => evaluate(&args[1], inputs),
            _ => evaluate(&args[2], inputs),
        },
        Func::IsNull => Scalar::Bool(evaluate(&args[0], inputs).missing()),
        _ => {
            let values: Vec<Scalar> = args.iter().map(|a| evaluate(a, inputs)).collect();
            if values.contains(&Scalar::Null) {
                return Scalar::Null;
            }
            strict_call(func, values)
        }
    }
}

fn strict_call(func: Func, mut values: Vec<Scalar>) -> Scalar {
    let x = values.first().and_then(float).unwrap_or(f64::NAN);
    let text = |i: usize| match values.get(i) {
        Some(Scalar::Text(t)) => t.as_str(),
        _ => "",
    };
    match func {
        Func::Abs => match values[0] {
            Scalar::Int(v) => v.checked_abs().map_or(Scalar::Null, Scalar::Int),
            _ => Scalar::Float(x.abs()),
        },
        Func::Sqrt => Scalar::Float(x.sqrt()),
        Func::Exp => Scalar::Float(x.exp()),
        Func::Ln => Scalar::Float(x.ln()),
        Func::Log10 => Scalar::Float(x.log10()),
        Func::Pow => Scalar::Float(x.powf(float(&values[1]).unwrap_or(f64::NAN))),
        Func::Floor | Func::Ceil | Func::Round => match values[0] {
            Scalar::Int(v) => Scalar::Int(v),
            _ => whole(match func {
                Func::Floor => x.floor(),
                Func::Ceil => x.ceil(),
                // Halves go to the even neighbour, as Python's and NumPy's round do.
                _ => x.round_ties_even(),
            }),
        },
        Func::Min | Func::Max => {
            if values.iter().all(|v| matches!(v, Scalar::Int(_))) {
                let ints = values
                    .iter()
                    .filter_map(|v| if let Scalar::Int(i) = v { Some(*i) } else { None });
                let picked = if func == Func::Min { ints.min() } else { ints.max() };
                return picked.map_or(Scalar::Null, Scalar::Int);
            }
            let floats: Vec<f64> = values.iter().filter_map(float).collect();
            if floats.iter().any(|f| f.is_nan()) {
                return Scalar::Float(f64::NAN);
            }
            let picked = floats
                .into_iter()
                .reduce(if func == Func::Min { f64::min } else { f64::max });
            picked.map_or(Scalar::Null, Scalar::Float)
        }
        Func::Int => match &values[0] {
            Scalar::Int(v) => Scalar::Int(*v),
            Scalar::Float(v) => whole(v.trunc()),
            Scalar::Bool(v) => Scalar::Int(i64::from(*v)),
            Scalar::Text(t) => t.trim().parse().map_or(Scalar::Null, Scalar::Int),
            Scalar::Null => Scalar::Null,
        },
        Func::Float => match &values[0] {
            Scalar::Int(v) => Scalar::Float(*v as f64),
            Scalar::Float(v) => Scalar::Float(*v),
            Scalar::Bool(v) => Scalar::Float(f64::from(u8::from(*v))),
            Scalar::Text(t) => t.trim().parse().map_or(Scalar::Null, Scalar::Float),
            Scalar::Null => Scalar::Null,
        },
        Func::Lower => Scalar::Text(text(0).to_lowercase()),
        Func::Upper => Scalar::Text(text(0).to_uppercase()),
        Func::Length => Scalar::Int(text(0).chars().count() as i64),
        Func::Contains => Scalar::Bool(text(0).contains(text(1))),
        Func::StartsWith => Scalar::Bool(text(0).starts_with(text(1))),
        Func::EndsWith => Scalar::Bool(text(0).ends_with(text(1))),
        Func::Coalesce | Func::If | Func::IsNull => std::mem::replace(&mut values[0], Scalar::Null),
    }
}
