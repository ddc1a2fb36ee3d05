use super::*;
use proptest::prelude::*;

fn kinds(name: &str) -> Result<Kind, String> {
    match name {
        "i" | "j" | "v.i" => Ok(Kind::Int),
        "f" => Ok(Kind::Float),
        "b" => Ok(Kind::Bool),
        "s" | "conv-rate" => Ok(Kind::Text),
        other => Err(format!("no input `{other}`")),
    }
}

fn run(text: &str, values: &[(&str, Scalar)]) -> Scalar {
    let expression = Expression::parse(text, &kinds).unwrap_or_else(|e| panic!("{text}: {e}"));
    let inputs: Vec<Scalar> = expression
        .inputs
        .iter()
        .map(|name| {
            values
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Scalar::Null, |(_, v)| v.clone())
        })
        .collect();
    expression.evaluate(&inputs)
}

#[test]
fn arithmetic_follows_numpy() {
    assert_eq!(run("1 + 2 * 3", &[]), Scalar::Int(7));
    assert_eq!(run("(1 + 2) * 3", &[]), Scalar::Int(9));
    assert_eq!(run("7 / 2", &[]), Scalar::Float(3.5));
    assert_eq!(run("-7 % 3", &[]), Scalar::Int(2));
    assert_eq!(run("7 % -3", &[]), Scalar::Int(-2));
    assert_eq!(run("-7.5 % 2", &[]), Scalar::Float(0.5));
    assert_eq!(run("-4.0 % 2.0", &[]), Scalar::Float(0.0));
    assert!(matches!(run("4.0 % -2.0", &[]), Scalar::Float(z) if z == 0.0 && z.is_sign_negative()));
    assert_eq!(run("i % -1", &[("i", Scalar::Int(i64::MIN))]), Scalar::Int(0));
    assert_eq!(run("1 / 0", &[]), Scalar::Float(f64::INFINITY));
    assert_eq!(run("i % 0", &[("i", Scalar::Int(4))]), Scalar::Null);
    assert_eq!(run("i * 2", &[("i", Scalar::Int(i64::MAX))]), Scalar::Null);
    assert_eq!(
        run("i + f", &[("i", Scalar::Int(1)), ("f", Scalar::Float(0.5))]),
        Scalar::Float(1.5)
    );
    assert_eq!(run("1 - 2 - 3", &[]), Scalar::Int(-4));
    assert_eq!(run("2 * -i", &[("i", Scalar::Int(3))]), Scalar::Int(-6));
    assert_eq!(run("round(2.5) + round(3.5)", &[]), Scalar::Int(6));
    assert_eq!(run("floor(-0.5)", &[]), Scalar::Int(-1));
    assert_eq!(run("int(f)", &[("f", Scalar::Float(f64::NAN))]), Scalar::Null);
    assert_eq!(run("int('12')", &[]), Scalar::Int(12));
    assert_eq!(run("max(i, 2.5)", &[("i", Scalar::Int(3))]), Scalar::Float(3.0));
    assert_eq!(run("1_000 * 1e3", &[]), Scalar::Float(1e6));
}

#[test]
fn missing_values_propagate_except_where_they_are_handled() {
    assert_eq!(run("f * 2", &[]), Scalar::Null);
    assert_eq!(run("coalesce(f, i, 0)", &[("i", Scalar::Int(4))]), Scalar::Float(4.0));
    assert_eq!(
        run("coalesce(f, 1)", &[("f", Scalar::Float(f64::NAN))]),
        Scalar::Float(1.0)
    );
    assert_eq!(run("is_null(s)", &[]), Scalar::Bool(true));
    assert_eq!(run("if(b, 1, 2)", &[]), Scalar::Int(2));
    assert_eq!(run("b and false", &[]), Scalar::Bool(false));
    assert_eq!(run("false and b", &[]), Scalar::Bool(false));
    assert_eq!(run("b or true", &[]), Scalar::Bool(true));
    assert_eq!(run("b and true", &[]), Scalar::Null);
    assert_eq!(run("i > 3", &[]), Scalar::Null);
    assert_eq!(run("f == f", &[("f", Scalar::Float(f64::NAN))]), Scalar::Bool(false));
}

#[test]
fn text_booleans_and_names() {
    let s = ("s", Scalar::Text("Berlin".into()));
    assert_eq!(
        run("lower(s) == 'berlin'", std::slice::from_ref(&s)),
        Scalar::Bool(true)
    );
    assert_eq!(run("length(s) + 1", std::slice::from_ref(&s)), Scalar::Int(7));
    assert_eq!(
        run(
            "starts_with(s, \"Ber\") and not ends_with(s, 'x')",
            std::slice::from_ref(&s)
        ),
        Scalar::Bool(true)
    );
    assert_eq!(run("not 1 > 2", &[]), Scalar::Bool(true));
    assert_eq!(run("!b", &[("b", Scalar::Bool(false))]), Scalar::Bool(true));
    assert_eq!(
        run("v.i + j", &[("v.i", Scalar::Int(1)), ("j", Scalar::Int(2))]),
        Scalar::Int(3)
    );
    assert_eq!(
        run("`conv-rate` == 'a\\'b'", &[("conv-rate", Scalar::Text("a'b".into()))]),
        Scalar::Bool(true)
    );
    let expression = Expression::parse("i + i * j", &kinds).unwrap();
    assert_eq!(expression.inputs, vec!["i", "j"]);
}

#[test]
fn mistakes_are_named() {
    let error = |text: &str| Expression::parse(text, &kinds).unwrap_err();
    assert!(error("nope + 1").contains("no input `nope`"));
    // A backquoted keyword is a name.
    assert!(error("`true` and b").contains("no input `true`"));
    assert!(error("s + 1").contains("cannot take text and an integer"));
    assert!(error("if(i, 1, 2)").contains("boolean condition"));
    assert!(error("if(b, 1, 'x')").contains("one type"));
    assert!(error("frobnicate(i)").contains("unknown function"));
    assert!(error("1 < 2 < 3").contains("chained"));
    assert!(error("(1 + 2").contains("expected `)`"));
    assert!(error("1 +").contains("ends where a value"));
    assert!(error("1 2").contains("after the end"));
    assert!(error("'open").contains("not closed"));
    assert!(error("").contains("empty"));
    assert!(error("99999999999999999999").contains("integer between"));
    assert!(error(&"(".repeat(200)).contains("nests deeper"));
    assert!(error(&format!("1{}", " + 1".repeat(2000))).contains("more than the"));
    assert!(error(&format!("1{}", "+1".repeat(300))).contains("operations deep"));
    assert_eq!(run(&format!("1{}", "+1".repeat(100)), &[]), Scalar::Int(101));
    assert!(error(&"-".repeat(300)).contains("nests deeper"));
}

#[test]
fn results_fit_declared_types() {
    assert!(fits(Kind::Int, ValueType::Float32));
    assert!(!fits(Kind::Float, ValueType::Int64));
    assert_eq!(Scalar::Int(1 << 40).into_feature(ValueType::Int32), FeatureValue::Null);
    assert_eq!(
        Scalar::Int(5).into_feature(ValueType::Float64),
        FeatureValue::Float64(5.0)
    );
}

proptest! {
    #[test]
    fn hostile_text_never_panics(text in "[-+*/%()!<>=,.`'\" a-z0-9_]{0,200}") {
        if let Ok(expression) = Expression::parse(&text, &kinds) {
            let inputs = vec![Scalar::Null; expression.inputs.len()];
            let _ = expression.evaluate(&inputs);
            let inputs: Vec<Scalar> = expression.inputs.iter().map(|n| match kinds(n) {
                Ok(Kind::Int) => Scalar::Int(i64::MIN),
                Ok(Kind::Float) => Scalar::Float(-0.0),
                Ok(Kind::Bool) => Scalar::Bool(true),
                _ => Scalar::Text(String::new()),
            }).collect();
            let _ = expression.evaluate(&inputs);
        }
    }

    #[test]
    fn any_unicode_never_panics(text in "\\PC{0,64}") {
        let _ = Expression::parse(&text, &kinds);
    }
}
