//! A bounded parser for the GraphQL documents the MLflow web UI sends: operations (`query`, `mutation` or
//! anonymous) with variable definitions and directives (both read and ignored), fields with aliases,
//! arguments and selection sets. Fragments are refused. Every limit is checked while parsing, so no document
//! can make it recurse deeply or allocate much.

use serde_json::{Map, Value};

/// The longest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 128 * 1024;
/// How deeply selection sets, lists and objects may nest while parsing (the depth MLflow answers is checked later).
const MAX_NESTING: usize = 64;
/// The most tokens a document may hold.
const MAX_TOKENS: usize = 20_000;

/// A field in a selection set.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// `alias:` when given.
    pub alias: Option<String>,
    /// The field's name.
    pub name: String,
    /// Arguments, with variables left as [`Input::Variable`].
    pub arguments: Vec<(String, Input)>,
    /// The sub-selection (empty for a leaf).
    pub selections: Vec<Field>,
}

impl Field {
    /// The key the answer uses: the alias, else the name.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// An argument value.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `$name`.
    Variable(String),
    /// Any literal, as JSON (enums as strings).
    Literal(Value),
    /// A list that may hold variables.
    List(Vec<Input>),
    /// An object that may hold variables.
    Object(Vec<(String, Input)>),
}

impl Input {
    /// The value with variables substituted (a missing variable is null).
    pub fn resolve(&self, variables: &Map<String, Value>) -> Value {
        match self {
            Input::Variable(name) => variables.get(name).cloned().unwrap_or(Value::Null),
            Input::Literal(value) => value.clone(),
            Input::List(items) => Value::Array(items.iter().map(|item| item.resolve(variables)).collect()),
            Input::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| (key.clone(), value.resolve(variables)))
                    .collect(),
            ),
        }
    }
}

/// One operation of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `query` or `mutation`.
    pub kind: String,
    /// Its name, when given.
    pub name: Option<String>,
    /// The root selection set.
    pub selections: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Punctuator(char),
    Spread,
    Str(String),
    Number(Value),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let characters: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        if tokens.len() > MAX_TOKENS {
            return Err(format!("the document has more than {MAX_TOKENS} tokens"));
        }
        let character = characters[index];
        match character {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => index += 1,
            '#' => {
                while index < characters.len() && characters[index] != '\n' {
                    index += 1;
                }
            }
            '{' | '}' | '(' | ')' | '[' | ']' | ':' | '$' | '!' | '=' | '@' | '|' | '&' => {
                tokens.push(Token::Punctuator(character));
                index += 1;
            }
            '.' => {
                if characters.get(index + 1) == Some(&'.') && characters.get(index + 2) == Some(&'.') {
                    tokens.push(Token::Spread);
                    index += 3;
                } else {
                    return Err("unexpected '.'".to_string());
                }
            }
            '"' => {
                let (text, next) = read_string(&characters, index)?;
                tokens.push(Token::Str(text));
                index = next;
            }
            '-' | '0'..='9' => {
                let start = index;
                index += 1;
                while index < characters.len()
                    && (characters[index].is_ascii_digit() || matches!(characters[index], '.' | 'e' | 'E' | '+' | '-'))
                {
                    index += 1;
                }
                let literal: String = characters[start..index].iter().collect();
                let number = serde_json::from_str::<serde_json::Number>(&literal)
                    .map_err(|_| format!("'{literal}' is not a number"))?;
                tokens.push(Token::Number(Value::Number(number)));
            }
            letter if letter == '_' || letter.is_ascii_alphabetic() => {
                let start = index;
                while index < characters.len()
                    && (characters[index] == '_' || characters[index].is_ascii_alphanumeric())
                {
                    index += 1;
                }
                tokens.push(Token::Name(characters[start..index].iter().collect()));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(tokens)
}

/// A `"..."` string (escapes as JSON's) or a `"""..."""` block string (taken as written).
fn read_string(characters: &[char], start: usize) -> Result<(String, usize), String> {
    if characters.get(start + 1) == Some(&'"') && characters.get(start + 2) == Some(&'"') {
        let mut index = start + 3;
        while index + 2 < characters.len() {
            if characters[index] == '"' && characters[index + 1] == '"' && characters[index + 2] == '"' {
                return Ok((characters[start + 3..index].iter().collect(), index + 3));
            }
            index += 1;
        }
        return Err("a block string is not closed".to_string());
    }
    let mut index = start + 1;
    let mut raw = String::from("\"");
    while index < characters.len() {
        let character = characters[index];
        raw.push(character);
        if character == '\\' {
            index += 1;
            if let Some(&escaped) = characters.get(index) {
                raw.push(escaped);
            }
        } else if character == '"' {
            let text =
                serde_json::from_str::<String>(&raw).map_err(|_| "a string has an invalid escape".to_string())?;
            return Ok((text, index + 1));
        } else if character == '\n' {
            return Err("a string is not closed before the end of its line".to_string());
        }
        index += 1;
    }
    Err("a string is not closed".to_string())
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn expect(&mut self, punctuator: char) -> Result<(), String> {
        match self.next() {
            Some(Token::Punctuator(found)) if found == punctuator => Ok(()),
            other => Err(format!("expected '{punctuator}', found {}", describe(other.as_ref()))),
        }
    }

    fn is(&self, punctuator: char) -> bool {
        self.peek() == Some(&Token::Punctuator(punctuator))
    }

    fn name(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Name(name)) => Ok(name),
            other => Err(format!("expected a name, found {}", describe(other.as_ref()))),
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(format!("the document nests deeper than {MAX_NESTING} levels"));
        }
        Ok(())
    }

    fn document(&mut self) -> Result<Vec<Operation>, String> {
        let mut operations = Vec::new();
        while self.peek().is_some() {
            operations.push(self.operation()?);
        }
        if operations.is_empty() {
            return Err("the document has no operation".to_string());
        }
        Ok(operations)
    }

    fn operation(&mut self) -> Result<Operation, String> {
        if self.is('{') {
            return Ok(Operation {
                kind: "query".to_string(),
                name: None,
                selections: self.selection_set()?,
            });
        }
        let kind = self.name()?;
        match kind.as_str() {
            "query" | "mutation" => {}
            "fragment" => return Err("fragments are not supported".to_string()),
            "subscription" => return Err("subscriptions are not supported".to_string()),
            other => return Err(format!("expected query or mutation, found '{other}'")),
        }
        let name = match self.peek() {
            Some(Token::Name(_)) => Some(self.name()?),
            _ => None,
        };
        if self.is('(') {
            self.skip_variable_definitions()?;
        }
        self.skip_directives()?;
        Ok(Operation {
            kind,
            name,
            selections: self.selection_set()?,
        })
    }

    /// `($input: Type!, $other: [Type] = default)`: read past (types are not checked).
    fn skip_variable_definitions(&mut self) -> Result<(), String> {
        self.expect('(')?;
        while !self.is(')') {
            self.expect('$')?;
            self.name()?;
            self.expect(':')?;
            self.skip_type()?;
            if self.is('=') {
                self.next();
                self.value()?;
            }
            self.skip_directives()?;
        }
        self.expect(')')
    }

    fn skip_type(&mut self) -> Result<(), String> {
        self.enter()?;
        if self.is('[') {
            self.next();
            self.skip_type()?;
            self.expect(']')?;
        } else {
            self.name()?;
        }
        if self.is('!') {
            self.next();
        }
        self.nesting -= 1;
        Ok(())
    }

    fn skip_directives(&mut self) -> Result<(), String> {
        while self.is('@') {
            self.next();
            self.name()?;
            if self.is('(') {
                self.arguments()?;
            }
        }
        Ok(())
    }

    fn selection_set(&mut self) -> Result<Vec<Field>, String> {
        self.enter()?;
        self.expect('{')?;
        let mut fields = Vec::new();
        while !self.is('}') {
            if self.peek() == Some(&Token::Spread) {
                return Err("fragments are not supported".to_string());
            }
            fields.push(self.field()?);
        }
        self.expect('}')?;
        self.nesting -= 1;
        Ok(fields)
    }

    fn field(&mut self) -> Result<Field, String> {
        let first = self.name()?;
        let (alias, name) = if self.is(':') {
            self.next();
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        let arguments = if self.is('(') { self.arguments()? } else { Vec::new() };
        self.skip_directives()?;
        let selections = if self.is('{') {
            self.selection_set()?
        } else {
            Vec::new()
        };
        Ok(Field {
            alias,
            name,
            arguments,
            selections,
        })
    }

    fn arguments(&mut self) -> Result<Vec<(String, Input)>, String> {
        self.expect('(')?;
        let mut arguments = Vec::new();
        while !self.is(')') {
            let name = self.name()?;
            self.expect(':')?;
            arguments.push((name, self.value()?));
        }
        self.expect(')')?;
        Ok(arguments)
    }

    fn value(&mut self) -> Result<Input, String> {
        self.enter()?;
        let value = match self.next() {
            Some(Token::Punctuator('$')) => Input::Variable(self.name()?),
            Some(Token::Str(text)) => Input::Literal(Value::String(text)),
            Some(Token::Number(number)) => Input::Literal(number),
            Some(Token::Name(name)) => Input::Literal(match name.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::String(name),
            }),
            Some(Token::Punctuator('[')) => {
                let mut items = Vec::new();
                while !self.is(']') {
                    if self.peek().is_none() {
                        return Err("a list is not closed".to_string());
                    }
                    items.push(self.value()?);
                }
                self.expect(']')?;
                Input::List(items)
            }
            Some(Token::Punctuator('{')) => {
                let mut entries = Vec::new();
                while !self.is('}') {
                    let key = self.name()?;
                    self.expect(':')?;
                    entries.push((key, self.value()?));
                }
                self.expect('}')?;
                Input::Object(entries)
            }
            other => return Err(format!("expected a value, found {}", describe(other.as_ref()))),
        };
        self.nesting -= 1;
        Ok(value)
    }
}

fn describe(token: Option<&Token>) -> String {
    match token {
        None => "the end of the document".to_string(),
        Some(Token::Name(name)) => format!("'{name}'"),
        Some(Token::Punctuator(character)) => format!("'{character}'"),
        Some(Token::Spread) => "'...'".to_string(),
        Some(Token::Str(_)) => "a string".to_string(),
        Some(Token::Number(number)) => format!("{number}"),
    }
}

/// Parses a document, or says why it is not one this server reads.
pub fn parse(document: &str) -> Result<Vec<Operation>, String> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "the query is {} bytes long, more than the {MAX_DOCUMENT_BYTES} accepted",
            document.len()
        ));
    }
    let tokens = tokenize(document)?;
    Parser {
        tokens,
        position: 0,
        nesting: 0,
    }
    .document()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_ui_queries() {
        let operations = parse(
            r#"query MlflowGetExperimentQuery($input: MlflowGetExperimentInput!) @component(name: "MLflow.X") {
              mlflowGetExperiment(input: $input) { apiError { code message __typename } experiment { name tags { key value } } }
            }"#,
        )
        .unwrap();
        let root = &operations[0].selections[0];
        assert_eq!(root.name, "mlflowGetExperiment");
        assert_eq!(
            root.arguments[0],
            ("input".to_string(), Input::Variable("input".to_string()))
        );
        assert_eq!(root.selections[1].selections[1].selections.len(), 2);
        let aliased =
            parse(r#"{ a: test(inputString: "x\n", n: [1, -2.5e3, true, null, ENUM, {k: $v}]) { output } }"#).unwrap();
        let field = &aliased[0].selections[0];
        assert_eq!(field.key(), "a");
        let variables: Map<String, Value> = serde_json::from_str(r#"{"v": 7}"#).unwrap();
        assert_eq!(field.arguments[0].1.resolve(&variables), Value::String("x\n".into()));
        assert_eq!(
            field.arguments[1].1.resolve(&variables),
            serde_json::json!([1, -2.5e3, true, null, "ENUM", {"k": 7}])
        );
    }

    #[test]
    fn refuses_what_it_does_not_read() {
        for bad in [
            "",
            "{",
            "query { a { ...Frag } }",
            "fragment F on T { a }",
            "subscription { a }",
            "{ a(x: \"unclosed) }",
            "{ a(x: [1, 2) }",
            "{ a . b }",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "{ a ".repeat(100), "}".repeat(100));
        assert!(parse(&deep).unwrap_err().contains("nests deeper"));
        let wide_value = format!("{{ a(x: {}1{}) }}", "[".repeat(1_000), "]".repeat(1_000));
        assert!(parse(&wide_value).is_err());
        assert!(parse(&"{ a }".repeat(60_000)).unwrap_err().contains("bytes long"));
    }

    proptest! {
        #[test]
        fn arbitrary_documents_never_panic(document in "[{}()\\[\\]:$!@ a-z0-9\"\\\\.#,-]{0,400}") {
            let _ = parse(&document);
        }
    }
}
