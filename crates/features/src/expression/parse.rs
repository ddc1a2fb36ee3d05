//! Parsing and type-checking expressions: a tokenizer and a precedence-climbing parser that types every node
//! as it builds it and bounds length, nesting and tree height.

use super::*;

/// Parses and type-checks `text` (see [`Expression::parse`]).
pub(super) fn parse(text: &str, resolve: &dyn Fn(&str) -> Result<Kind, String>) -> Result<Expression, String> {
    if text.len() > MAX_EXPRESSION_BYTES {
        return Err(format!(
            "the expression is {} bytes, more than the {MAX_EXPRESSION_BYTES} accepted",
            text.len()
        ));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        resolve,
        inputs: Vec::new(),
    };
    let typed = parser.expression(0)?;
    if let Some(token) = parser.tokens.get(parser.at) {
        return Err(format!(
            "unexpected {} after the end of the expression",
            token.describe()
        ));
    }
    Ok(Expression {
        size: count(&typed.node),
        root: typed.node,
        kind: typed.kind,
        inputs: parser.inputs,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(String),
    Text(String),
    Name(String),
    /// A name in backquotes: always a name, never a keyword or function.
    Quoted(String),
    Symbol(&'static str),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Number(n) => format!("number {n}"),
            Token::Text(t) => format!("text {t:?}"),
            Token::Name(n) | Token::Quoted(n) => format!("`{n}`"),
            Token::Symbol(s) => format!("`{s}`"),
        }
    }
}

const SYMBOLS: [&str; 16] = [
    "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",", ".", "!",
];

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                i += 1;
                if i < chars.len() && (chars[i] == '+' || chars[i] == '-') {
                    i += 1;
                }
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            tokens.push(Token::Number(chars[start..i].iter().filter(|c| **c != '_').collect()));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Name(chars[start..i].iter().collect()));
        } else if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|c| *c == '`')
                .ok_or("a name opened with ` is not closed")?;
            tokens.push(Token::Quoted(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if c == '\'' || c == '"' {
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("text opened with {c} is not closed")),
                    Some('\\') => {
                        value.push(*chars.get(i + 1).ok_or("text ends with a lone \\")?);
                        i += 2;
                    }
                    Some(q) if *q == c => {
                        i += 1;
                        break;
                    }
                    Some(other) => {
                        value.push(*other);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Text(value));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let symbol = SYMBOLS
                .iter()
                .find(|s| rest.starts_with(**s))
                .ok_or_else(|| format!("unexpected character {c:?}"))?;
            tokens.push(Token::Symbol(symbol));
            i += symbol.len();
        }
    }
    if tokens.is_empty() {
        return Err("the expression is empty".to_string());
    }
    Ok(tokens)
}

struct Typed {
    node: Node,
    kind: Kind,
    /// The height of its tree, which evaluation recurses through.
    height: usize,
}

/// The tallest expression tree accepted (a long chain `a + b + ...` is as tall as it is long).
pub const MAX_HEIGHT: usize = 128;

fn taller(height: usize) -> Result<usize, String> {
    if height > MAX_HEIGHT {
        Err(format!(
            "the expression is more than {MAX_HEIGHT} operations deep; split it over several features"
        ))
    } else {
        Ok(height)
    }
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    resolve: &'a dyn Fn(&str) -> Result<Kind, String>,
    inputs: Vec<String>,
}

/// Binding strength of binary operators: `or` < `and` < comparisons < `+ -` < `* / %`.
fn binary(token: &Token) -> Option<(Op, u8)> {
    Some(match token {
        Token::Name(n) if n == "or" => (Op::Or, 1),
        Token::Name(n) if n == "and" => (Op::And, 2),
        Token::Symbol("==") => (Op::Eq, 4),
        Token::Symbol("!=") => (Op::Ne, 4),
        Token::Symbol("<") => (Op::Lt, 4),
        Token::Symbol("<=") => (Op::Le, 4),
        Token::Symbol(">") => (Op::Gt, 4),
        Token::Symbol(">=") => (Op::Ge, 4),
        Token::Symbol("+") => (Op::Add, 5),
        Token::Symbol("-") => (Op::Sub, 5),
        Token::Symbol("*") => (Op::Mul, 6),
        Token::Symbol("/") => (Op::Div, 6),
        Token::Symbol("%") => (Op::Rem, 6),
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn expect(&mut self, symbol: &str) -> Result<(), String> {
        match self.tokens.get(self.at) {
            Some(Token::Symbol(s)) if *s == symbol => {
                self.at += 1;
                Ok(())
            }
            Some(other) => Err(format!("expected `{symbol}`, found {}", other.describe())),
            None => Err(format!("expected `{symbol}`, found the end of the expression")),
        }
    }

    /// Precedence climbing; `depth` counts nesting so hostile input cannot exhaust the stack.
    fn expression(&mut self, depth: usize) -> Result<Typed, String> {
        self.climb(0, depth)
    }

    fn climb(&mut self, min: u8, depth: usize) -> Result<Typed, String> {
        if depth > MAX_DEPTH {
            return Err(format!("the expression nests deeper than {MAX_DEPTH} levels"));
        }
        let mut left = self.unary(depth + 1)?;
        while let Some((op, strength)) = self.peek().and_then(binary) {
            if strength <= min {
                break;
            }
            self.at += 1;
            let right = self.climb(strength, depth + 1)?;
            if matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge)
                && self.peek().and_then(binary).is_some_and(|(_, s)| s == 4)
            {
                return Err("comparisons cannot be chained; join them with `and`".to_string());
            }
            left = combine(op, left, right)?;
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Typed, String> {
        if depth > MAX_DEPTH {
            return Err(format!("the expression nests deeper than {MAX_DEPTH} levels"));
        }
        match self.peek() {
            Some(Token::Symbol("-")) => {
                self.at += 1;
                let operand = self.unary(depth + 1)?;
                if !operand.kind.numeric() {
                    return Err(format!("`-` needs a number, not {}", operand.kind.name()));
                }
                Ok(Typed {
                    kind: operand.kind,
                    height: taller(operand.height + 1)?,
                    node: Node::Neg(Box::new(operand.node)),
                })
            }
            Some(Token::Symbol("!")) => {
                self.at += 1;
                self.negation(depth)
            }
            Some(Token::Name(n)) if n == "not" => {
                self.at += 1;
                self.negation(depth)
            }
            _ => self.primary(depth),
        }
    }

    fn negation(&mut self, depth: usize) -> Result<Typed, String> {
        // `not` binds looser than comparisons: `not a > b` is `not (a > b)`.
        let operand = self.climb(3, depth + 1)?;
        if operand.kind != Kind::Bool {
            return Err(format!("`not` needs a boolean, not {}", operand.kind.name()));
        }
        Ok(Typed {
            kind: Kind::Bool,
            height: taller(operand.height + 1)?,
            node: Node::Not(Box::new(operand.node)),
        })
    }

    fn primary(&mut self, depth: usize) -> Result<Typed, String> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or("the expression ends where a value was expected")?;
        self.at += 1;
        match token {
            Token::Number(text) => number(&text),
            Token::Text(text) => Ok(Typed {
                node: Node::Literal(Scalar::Text(text)),
                kind: Kind::Text,
                height: 1,
            }),
            Token::Symbol("(") => {
                let inner = self.expression(depth + 1)?;
                self.expect(")")?;
                Ok(inner)
            }
            Token::Name(name) if name == "true" || name == "false" => Ok(Typed {
                node: Node::Literal(Scalar::Bool(name == "true")),
                kind: Kind::Bool,
                height: 1,
            }),
            Token::Name(name) if self.peek() == Some(&Token::Symbol("(")) => {
                self.at += 1;
                self.call(&name, depth)
            }
            Token::Name(name) | Token::Quoted(name) => {
                let mut full = name;
                if self.peek() == Some(&Token::Symbol(".")) {
                    self.at += 1;
                    match self.tokens.get(self.at) {
                        Some(Token::Name(feature) | Token::Quoted(feature)) => {
                            full = format!("{full}.{feature}");
                            self.at += 1;
                        }
                        _ => return Err(format!("`{full}.` must be followed by a feature name")),
                    }
                }
                let kind = (self.resolve)(&full)?;
                let slot = match self.inputs.iter().position(|n| n == &full) {
                    Some(slot) => slot,
                    None => {
                        self.inputs.push(full);
                        self.inputs.len() - 1
                    }
                };
                Ok(Typed {
                    node: Node::Input(slot, kind),
                    kind,
                    height: 1,
                })
            }
            other => Err(format!("unexpected {} where a value was expected", other.describe())),
        }
    }

    fn call(&mut self, name: &str, depth: usize) -> Result<Typed, String> {
        let func = Func::named(name).ok_or_else(|| {
            format!(
                "unknown function `{name}`; the functions are abs, sqrt, exp, ln, log10, pow, floor, ceil, round, \
                 min, max, coalesce, if, is_null, int, float, lower, upper, length, contains, starts_with, ends_with"
            )
        })?;
        let mut args = Vec::new();
        if self.peek() != Some(&Token::Symbol(")")) {
            loop {
                args.push(self.expression(depth + 1)?);
                if self.peek() == Some(&Token::Symbol(",")) {
                    self.at += 1;
                    continue;
                }
                break;
            }
        }
        self.expect(")")?;
        if args.len() > 64 {
            return Err(format!("`{name}` takes at most 64 arguments"));
        }
        typed_call(func, name, args)
    }
}

fn number(text: &str) -> Result<Typed, String> {
    let float = text.contains(['.', 'e', 'E']);
    if float {
        let value: f64 = text.parse().map_err(|_| format!("{text} is not a number"))?;
        Ok(Typed {
            node: Node::Literal(Scalar::Float(value)),
            kind: Kind::Float,
            height: 1,
        })
    } else {
        let value: i64 = text
            .parse()
            .map_err(|_| format!("{text} is not an integer between -2^63 and 2^63-1"))?;
        Ok(Typed {
            node: Node::Literal(Scalar::Int(value)),
            kind: Kind::Int,
            height: 1,
        })
    }
}

fn combine(op: Op, left: Typed, right: Typed) -> Result<Typed, String> {
    let (l, r) = (left.kind, right.kind);
    let symbol = match op {
        Op::Add => "+",
        Op::Sub => "-",
        Op::Mul => "*",
        Op::Div => "/",
        Op::Rem => "%",
        Op::Eq => "==",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::And => "and",
        Op::Or => "or",
    };
    let mismatch = || format!("`{symbol}` cannot take {} and {}", l.name(), r.name());
    let kind = match op {
        Op::Add | Op::Sub | Op::Mul | Op::Rem => {
            if !l.numeric() || !r.numeric() {
                return Err(mismatch());
            }
            if l == Kind::Int && r == Kind::Int {
                Kind::Int
            } else {
                Kind::Float
            }
        }
        Op::Div => {
            if !l.numeric() || !r.numeric() {
                return Err(mismatch());
            }
            Kind::Float
        }
        Op::Eq | Op::Ne => {
            if !(l.numeric() && r.numeric() || l == r) {
                return Err(mismatch());
            }
            Kind::Bool
        }
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            if !(l.numeric() && r.numeric() || l == Kind::Text && r == Kind::Text) {
                return Err(mismatch());
            }
            Kind::Bool
        }
        Op::And | Op::Or => {
            if l != Kind::Bool || r != Kind::Bool {
                return Err(mismatch());
            }
            Kind::Bool
        }
    };
    Ok(Typed {
        height: taller(left.height.max(right.height) + 1)?,
        node: Node::Binary(op, Box::new(left.node), Box::new(right.node)),
        kind,
    })
}

/// The common kind of values that must agree (integers widen to floats).
fn common(kinds: &[Kind]) -> Option<Kind> {
    let first = *kinds.first()?;
    if kinds.iter().all(|k| k.numeric()) {
        Some(if kinds.contains(&Kind::Float) {
            Kind::Float
        } else {
            Kind::Int
        })
    } else if kinds.iter().all(|k| *k == first) {
        Some(first)
    } else {
        None
    }
}

fn typed_call(func: Func, name: &str, args: Vec<Typed>) -> Result<Typed, String> {
    let kinds: Vec<Kind> = args.iter().map(|a| a.kind).collect();
    let count = |expected: usize| -> Result<(), String> {
        if kinds.len() == expected {
            Ok(())
        } else {
            Err(format!("`{name}` takes {expected} argument(s), not {}", kinds.len()))
        }
    };
    let numeric = |i: usize| -> Result<(), String> {
        if kinds[i].numeric() {
            Ok(())
        } else {
            Err(format!("`{name}` needs a number, not {}", kinds[i].name()))
        }
    };
    let text = |i: usize| -> Result<(), String> {
        if kinds[i] == Kind::Text {
            Ok(())
        } else {
            Err(format!("`{name}` needs text, not {}", kinds[i].name()))
        }
    };
    let kind = match func {
        Func::Abs => {
            count(1)?;
            numeric(0)?;
            kinds[0]
        }
        Func::Sqrt | Func::Exp | Func::Ln | Func::Log10 => {
            count(1)?;
            numeric(0)?;
            Kind::Float
        }
        Func::Pow => {
            count(2)?;
            numeric(0)?;
            numeric(1)?;
            Kind::Float
        }
        Func::Floor | Func::Ceil | Func::Round => {
            count(1)?;
            numeric(0)?;
            Kind::Int
        }
        Func::Min | Func::Max => {
            if kinds.len() < 2 {
                return Err(format!("`{name}` takes two or more numbers"));
            }
            for i in 0..kinds.len() {
                numeric(i)?;
            }
            common(&kinds).expect("all numeric")
        }
        Func::Coalesce => {
            if kinds.is_empty() {
                return Err("`coalesce` takes one or more values".to_string());
            }
            common(&kinds).ok_or_else(|| format!("`coalesce` needs values of one type, not {kinds:?}"))?
        }
        Func::If => {
            count(3)?;
            if kinds[0] != Kind::Bool {
                return Err(format!("`if` needs a boolean condition, not {}", kinds[0].name()));
            }
            common(&kinds[1..]).ok_or_else(|| {
                format!(
                    "`if` needs branches of one type, not {} and {}",
                    kinds[1].name(),
                    kinds[2].name()
                )
            })?
        }
        Func::IsNull => {
            count(1)?;
            Kind::Bool
        }
        Func::Int | Func::Float => {
            count(1)?;
            if func == Func::Int { Kind::Int } else { Kind::Float }
        }
        Func::Lower | Func::Upper => {
            count(1)?;
            text(0)?;
            Kind::Text
        }
        Func::Length => {
            count(1)?;
            text(0)?;
            Kind::Int
        }
        Func::Contains | Func::StartsWith | Func::EndsWith => {
            count(2)?;
            text(0)?;
            text(1)?;
            Kind::Bool
        }
    };
    let widen = matches!(func, Func::Coalesce | Func::If) && kind == Kind::Float;
    let tallest = args.iter().map(|a| a.height).max().unwrap_or(0);
    Ok(Typed {
        height: taller(tallest + 2)?,
        node: Node::Call(
            func,
            args.into_iter()
                .map(|a| {
                    // Branches that must agree are widened, so an integer branch of a float result gives a float.
                    if widen && a.kind == Kind::Int {
                        Node::Call(Func::Float, vec![a.node])
                    } else {
                        a.node
                    }
                })
                .collect(),
        ),
        kind,
    })
}
