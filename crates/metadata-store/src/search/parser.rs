//! Parser for MLflow's search filter grammar, extended with `OR` and parentheses.
//!
//! ```text
//! filter     := or_expr
//! or_expr    := and_expr ( OR and_expr )*
//! and_expr   := primary ( AND primary )*
//! primary    := '(' or_expr ')' | comparison
//! comparison := identifier comparator value | identifier IS [NOT] NULL | identifier [NOT] IN '(' value, ... ')'
//! identifier := [prefix '.'] key      key may be dotted, or quoted with backticks or double quotes
//! ```
//! The parser knows nothing about which identifiers an entity supports; each search compiler validates that.
//!
//! Filters arrive from anyone who can reach the server, so the parser is bounded: the text's length, how deep
//! parentheses nest (the parser and the compiler recurse once per level), how many comparisons there are (each
//! becomes a SQL predicate, and SQLite refuses expression trees past 1,000 levels) and how many list values
//! there are (each becomes a bound parameter, and SQLite refuses statements past 32,766 of them).

use std::fmt;

/// The longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 100_000;
/// How deep parentheses may nest.
pub const MAX_NESTING_DEPTH: usize = 32;
/// How many comparisons one filter may hold.
pub const MAX_COMPARISONS: usize = 500;
/// How many values all `IN` lists of one filter may hold together.
pub const MAX_LIST_VALUES: usize = 10_000;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterExpression {
    /// Every child must hold.
    And(Vec<FilterExpression>),
    /// At least one child must hold.
    Or(Vec<FilterExpression>),
    /// A single comparison.
    Comparison(Comparison),
}

impl FilterExpression {
    /// Whether any comparison in the expression satisfies `test`.
    pub fn any_comparison(&self, test: &dyn Fn(&Comparison) -> bool) -> bool {
        match self {
            FilterExpression::And(children) | FilterExpression::Or(children) => {
                children.iter().any(|child| child.any_comparison(test))
            }
            FilterExpression::Comparison(comparison) => test(comparison),
        }
    }
}

/// One `identifier comparator value` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The prefix before the first dot, lowercased (`metrics`, `tag`, ...), or None for a bare attribute.
    pub prefix: Option<String>,
    /// The key after the prefix, unquoted.
    pub key: String,
    /// The comparator.
    pub comparator: Comparator,
    /// The right-hand side.
    pub value: FilterValue,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// `=`
    Equal,
    /// `!=` or `<>`
    NotEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `LIKE` (case-sensitive)
    Like,
    /// `ILIKE` (case-insensitive)
    ILike,
    /// `IN (...)`
    In,
    /// `NOT IN (...)`
    NotIn,
    /// `IS NULL`
    IsNull,
    /// `IS NOT NULL`
    IsNotNull,
}

impl Comparator {
    /// The SQL operator for the plain binary comparators.
    pub fn sql_operator(self) -> &'static str {
        match self {
            Comparator::Equal => "=",
            Comparator::NotEqual => "!=",
            Comparator::Greater => ">",
            Comparator::GreaterOrEqual => ">=",
            Comparator::Less => "<",
            Comparator::LessOrEqual => "<=",
            Comparator::Like => "LIKE",
            Comparator::ILike => "ILIKE",
            Comparator::In => "IN",
            Comparator::NotIn => "NOT IN",
            Comparator::IsNull => "IS NULL",
            Comparator::IsNotNull => "IS NOT NULL",
        }
    }

    /// True for `= != > >= < <=`.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Comparator::Equal
                | Comparator::NotEqual
                | Comparator::Greater
                | Comparator::GreaterOrEqual
                | Comparator::Less
                | Comparator::LessOrEqual
        )
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.sql_operator())
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    /// A quoted string.
    Text(String),
    /// An unquoted number.
    Number(f64),
    /// A parenthesised list of quoted strings.
    List(Vec<String>),
    /// Nothing (IS NULL / IS NOT NULL).
    Null,
}

/// A filter could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Invalid filter '{filter}': {reason}")]
pub struct FilterSyntaxError {
    /// The filter as given.
    pub filter: String,
    /// What is wrong, in words.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Backticked(String),
    Number(f64),
    Operator(String),
    OpenParen,
    CloseParen,
    Comma,
}

fn is_word_char(character: char) -> bool {
    character.is_alphanumeric() || matches!(character, '_' | '.' | ':' | '/' | '-')
}

fn tokenize(filter: &str) -> Result<Vec<Token>, String> {
    let characters: Vec<char> = filter.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        let character = characters[index];
        if character.is_whitespace() {
            index += 1;
            continue;
        }
        match character {
            '(' => tokens.push(Token::OpenParen),
            ')' => tokens.push(Token::CloseParen),
            ',' => tokens.push(Token::Comma),
            '\'' | '"' | '`' => {
                let (text, next_index) = read_quoted(&characters, index)?;
                index = next_index;
                let token = match character {
                    '`' => Token::Backticked(text),
                    _ => Token::Quoted(text),
                };
                // A quoted key directly after `prefix.` belongs to that identifier.
                if let Some(Token::Word(word)) = tokens.last_mut()
                    && word.ends_with('.')
                    && character != '\''
                {
                    let (Token::Backticked(key) | Token::Quoted(key)) = token else {
                        unreachable!()
                    };
                    word.push('\u{0}');
                    word.push_str(&key);
                } else {
                    tokens.push(token);
                }
                continue;
            }
            '=' | '!' | '<' | '>' => {
                let mut operator = character.to_string();
                if let Some(&next) = characters.get(index + 1)
                    && matches!(next, '=' | '>')
                {
                    operator.push(next);
                    index += 1;
                }
                if operator == "!" {
                    return Err("'!' must be followed by '='".to_string());
                }
                tokens.push(Token::Operator(operator));
            }
            _ if character.is_ascii_digit()
                || ((character == '-' || character == '+' || character == '.')
                    && characters
                        .get(index + 1)
                        .is_some_and(|next| next.is_ascii_digit() || *next == '.')) =>
            {
                let start = index;
                index += 1;
                while index < characters.len()
                    && (characters[index].is_ascii_alphanumeric()
                        || characters[index] == '.'
                        || ((characters[index] == '-' || characters[index] == '+')
                            && matches!(characters[index - 1], 'e' | 'E')))
                {
                    index += 1;
                }
                let text: String = characters[start..index].iter().collect();
                let number = text.parse::<f64>().map_err(|_| format!("'{text}' is not a number"))?;
                tokens.push(Token::Number(number));
                continue;
            }
            _ if is_word_char(character) => {
                let start = index;
                while index < characters.len() && is_word_char(characters[index]) {
                    index += 1;
                }
                tokens.push(Token::Word(characters[start..index].iter().collect()));
                continue;
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
        index += 1;
    }
    Ok(tokens)
}

fn read_quoted(characters: &[char], start: usize) -> Result<(String, usize), String> {
    let quote = characters[start];
    let mut text = String::new();
    let mut index = start + 1;
    while index < characters.len() {
        let character = characters[index];
        if character == '\\' && index + 1 < characters.len() {
            text.push(characters[index + 1]);
            index += 2;
            continue;
        }
        if character == quote {
            if characters.get(index + 1) == Some(&quote) {
                text.push(quote);
                index += 2;
                continue;
            }
            return Ok((text, index + 1));
        }
        text.push(character);
        index += 1;
    }
    Err(format!("unterminated quote {quote} starting at position {start}"))
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    /// Parentheses open around the current position.
    depth: usize,
    /// Comparisons read so far.
    comparisons: usize,
    /// List values read so far.
    list_values: usize,
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

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword))
    }

    fn parse_or(&mut self) -> Result<FilterExpression, String> {
        let mut children = vec![self.parse_and()?];
        while self.peek_keyword("or") {
            self.position += 1;
            children.push(self.parse_and()?);
        }
        Ok(if children.len() == 1 {
            children.remove(0)
        } else {
            FilterExpression::Or(children)
        })
    }

    fn parse_and(&mut self) -> Result<FilterExpression, String> {
        let mut children = vec![self.parse_primary()?];
        while self.peek_keyword("and") {
            self.position += 1;
            children.push(self.parse_primary()?);
        }
        Ok(if children.len() == 1 {
            children.remove(0)
        } else {
            FilterExpression::And(children)
        })
    }

    fn parse_primary(&mut self) -> Result<FilterExpression, String> {
        if self.peek() == Some(&Token::OpenParen) {
            self.position += 1;
            self.depth += 1;
            if self.depth > MAX_NESTING_DEPTH {
                return Err(format!(
                    "parentheses nest deeper than {MAX_NESTING_DEPTH} levels; simplify the filter"
                ));
            }
            let inner = self.parse_or()?;
            if self.next() != Some(Token::CloseParen) {
                return Err("missing ')'".to_string());
            }
            self.depth -= 1;
            return Ok(inner);
        }
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(format!(
                "the filter holds more than {MAX_COMPARISONS} comparisons; split the search or use IN lists"
            ));
        }
        self.parse_comparison().map(FilterExpression::Comparison)
    }

    fn parse_comparison(&mut self) -> Result<Comparison, String> {
        let (prefix, key) = match self.next() {
            Some(Token::Word(word)) => split_identifier(&word)?,
            Some(Token::Backticked(key)) | Some(Token::Quoted(key)) => (None, key),
            Some(other) => return Err(format!("expected an identifier, found {}", describe(&other))),
            None => return Err("expected an identifier, found the end of the filter".to_string()),
        };
        let comparator = self.parse_comparator()?;
        let value = match comparator {
            Comparator::IsNull | Comparator::IsNotNull => FilterValue::Null,
            Comparator::In | Comparator::NotIn => FilterValue::List(self.parse_list()?),
            _ => match self.next() {
                Some(Token::Quoted(text)) => FilterValue::Text(text),
                Some(Token::Number(number)) => FilterValue::Number(number),
                Some(other) => {
                    return Err(format!(
                        "expected a value after '{comparator}', found {}",
                        describe(&other)
                    ));
                }
                None => return Err(format!("expected a value after '{comparator}'")),
            },
        };
        Ok(Comparison {
            prefix,
            key,
            comparator,
            value,
        })
    }

    fn parse_comparator(&mut self) -> Result<Comparator, String> {
        let token = self
            .next()
            .ok_or("expected a comparator, found the end of the filter")?;
        let comparator = match &token {
            Token::Operator(operator) => match operator.as_str() {
                "=" => Comparator::Equal,
                "!=" | "<>" => Comparator::NotEqual,
                ">" => Comparator::Greater,
                ">=" => Comparator::GreaterOrEqual,
                "<" => Comparator::Less,
                "<=" => Comparator::LessOrEqual,
                other => return Err(format!("invalid comparator '{other}'")),
            },
            Token::Word(word) => match word.to_ascii_lowercase().as_str() {
                "like" => Comparator::Like,
                "ilike" => Comparator::ILike,
                "in" => Comparator::In,
                "not" if self.peek_keyword("in") => {
                    self.position += 1;
                    Comparator::NotIn
                }
                "is" if self.peek_keyword("null") => {
                    self.position += 1;
                    Comparator::IsNull
                }
                "is" if self.peek_keyword("not") => {
                    self.position += 1;
                    if !self.peek_keyword("null") {
                        return Err("expected NULL after IS NOT".to_string());
                    }
                    self.position += 1;
                    Comparator::IsNotNull
                }
                "rlike" => {
                    return Err(
                        "RLIKE (regular expressions) is not supported by Loopline's filters: use LIKE or ILIKE \
                         with % and _ wildcards"
                            .to_string(),
                    );
                }
                other => return Err(format!("invalid comparator '{other}'")),
            },
            other => return Err(format!("expected a comparator, found {}", describe(other))),
        };
        // `>>` and similar arrive as two operator tokens.
        if let (Token::Operator(first), Some(Token::Operator(second))) = (&token, self.peek()) {
            return Err(format!("invalid comparator '{first}{second}'"));
        }
        Ok(comparator)
    }

    fn parse_list(&mut self) -> Result<Vec<String>, String> {
        if self.next() != Some(Token::OpenParen) {
            return Err("expected '(' to start a list of values".to_string());
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token::Quoted(text)) => {
                    self.list_values += 1;
                    if self.list_values > MAX_LIST_VALUES {
                        return Err(format!(
                            "the filter's IN lists hold more than {MAX_LIST_VALUES} values together"
                        ));
                    }
                    values.push(text);
                }
                Some(Token::Number(_)) => return Err("list values must be quoted strings".to_string()),
                Some(Token::CloseParen) if values.is_empty() => {
                    return Err("a value list must not be empty".to_string());
                }
                other => {
                    return Err(format!(
                        "expected a quoted value in the list, found {}",
                        describe_option(&other)
                    ));
                }
            }
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::CloseParen) => return Ok(values),
                other => {
                    return Err(format!(
                        "expected ',' or ')' in the list, found {}",
                        describe_option(&other)
                    ));
                }
            }
        }
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(word) => format!("'{}'", word.replace('\u{0}', "")),
        Token::Quoted(text) => format!("'{text}'"),
        Token::Backticked(text) => format!("`{text}`"),
        Token::Number(number) => number.to_string(),
        Token::Operator(operator) => format!("'{operator}'"),
        Token::OpenParen => "'('".to_string(),
        Token::CloseParen => "')'".to_string(),
        Token::Comma => "','".to_string(),
    }
}

fn describe_option(token: &Option<Token>) -> String {
    token
        .as_ref()
        .map(describe)
        .unwrap_or_else(|| "the end of the filter".to_string())
}

/// Splits `prefix.key` (the key may itself hold dots, or arrive quoted after a NUL marker).
fn split_identifier(word: &str) -> Result<(Option<String>, String), String> {
    if let Some((head, quoted_key)) = word.split_once(".\u{0}") {
        // `span.attributes.`a.b`` is prefix `span`, key `attributes.a.b`: only the first dot ends the prefix.
        return Ok(match head.split_once('.') {
            Some((prefix, rest)) => (Some(prefix.to_ascii_lowercase()), format!("{rest}.{quoted_key}")),
            None => (Some(head.to_ascii_lowercase()), quoted_key.to_string()),
        });
    }
    match word.split_once('.') {
        Some((prefix, key)) if !key.is_empty() => Ok((Some(prefix.to_ascii_lowercase()), key.to_string())),
        Some(_) => Err(format!("identifier '{word}' has no key after the dot")),
        None => Ok((None, word.to_string())),
    }
}

/// Parses a filter string. An empty or blank filter yields `None`.
pub fn parse_filter(filter: &str) -> Result<Option<FilterExpression>, FilterSyntaxError> {
    let error = |reason: String| FilterSyntaxError {
        filter: filter.to_string(),
        reason,
    };
    if filter.trim().is_empty() {
        return Ok(None);
    }
    if filter.contains('\0') {
        return Err(error("the filter contains a NUL character".to_string()));
    }
    if filter.len() > MAX_FILTER_BYTES {
        return Err(FilterSyntaxError {
            filter: format!("{}...", truncate_on_char_boundary(filter, 200)),
            reason: format!(
                "the filter is {} bytes long, more than the {MAX_FILTER_BYTES} accepted",
                filter.len()
            ),
        });
    }
    let tokens = tokenize(filter).map_err(error)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        depth: 0,
        comparisons: 0,
        list_values: 0,
    };
    let expression = parser.parse_or().map_err(error)?;
    if let Some(extra) = parser.peek() {
        return Err(error(format!(
            "unexpected {} after a complete expression",
            describe(extra)
        )));
    }
    Ok(Some(expression))
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character boundary.
pub fn truncate_on_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One `order_by` entry: `<identifier> [ASC|DESC]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderClause {
    /// Prefix (`metrics`, `params`, ...) or None for attributes.
    pub prefix: Option<String>,
    /// Key.
    pub key: String,
    /// Ascending order?
    pub ascending: bool,
}

/// Parses one order_by entry such as ``metrics.`acc` DESC`` or `start_time`.
pub fn parse_order_clause(text: &str) -> Result<OrderClause, FilterSyntaxError> {
    let error = |reason: String| FilterSyntaxError {
        filter: text.to_string(),
        reason,
    };
    if text.len() > MAX_FILTER_BYTES {
        return Err(FilterSyntaxError {
            filter: format!("{}...", truncate_on_char_boundary(text, 200)),
            reason: format!("the order_by clause is longer than {MAX_FILTER_BYTES} bytes"),
        });
    }
    let tokens = tokenize(text).map_err(error)?;
    let mut tokens = tokens.into_iter();
    let (prefix, key) = match tokens.next() {
        Some(Token::Word(word)) => split_identifier(&word).map_err(error)?,
        Some(Token::Backticked(key)) | Some(Token::Quoted(key)) => (None, key),
        _ => return Err(error("expected an identifier to order by".to_string())),
    };
    let ascending = match tokens.next() {
        None => true,
        Some(Token::Word(word)) if word.eq_ignore_ascii_case("asc") => true,
        Some(Token::Word(word)) if word.eq_ignore_ascii_case("desc") => false,
        Some(other) => return Err(error(format!("expected ASC or DESC, found {}", describe(&other)))),
    };
    if let Some(extra) = tokens.next() {
        return Err(error(format!(
            "unexpected {} after the sort direction",
            describe(&extra)
        )));
    }
    Ok(OrderClause { prefix, key, ascending })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comparison(filter: &str) -> Comparison {
        match parse_filter(filter).unwrap().unwrap() {
            FilterExpression::Comparison(comparison) => comparison,
            other => panic!("expected one comparison, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_observed_mlflow_filters() {
        let parsed = parse_filter("metrics.acc >= 0.25 AND metrics.loss < 0.9")
            .unwrap()
            .unwrap();
        let FilterExpression::And(children) = parsed else {
            panic!("expected AND")
        };
        assert_eq!(children.len(), 2);
        let backticked = comparison("tags.`mlflow.prompt.is_prompt` != 'true'");
        assert_eq!(backticked.prefix.as_deref(), Some("tags"));
        assert_eq!(backticked.key, "mlflow.prompt.is_prompt");
        assert_eq!(backticked.comparator, Comparator::NotEqual);
        let dotted = comparison("tags.mlflow.runName = 'r4'");
        assert_eq!(dotted.key, "mlflow.runName");
        let quoted = comparison("params.\"my key\" = \"v\"");
        assert_eq!(
            (quoted.key.as_str(), quoted.value),
            ("my key", FilterValue::Text("v".into()))
        );
        let listed = comparison("attributes.run_id IN ('a', 'b')");
        assert_eq!(listed.value, FilterValue::List(vec!["a".into(), "b".into()]));
        assert_eq!(comparison("tags.missing IS NULL").comparator, Comparator::IsNull);
        assert_eq!(comparison("tags.x is not null").comparator, Comparator::IsNotNull);
        assert_eq!(comparison("run_name != 'r3'").prefix, None);
        assert_eq!(comparison("metrics.x>-1.5e-3").value, FilterValue::Number(-1.5e-3));
        assert_eq!(comparison("run_id NOT IN ('a')").comparator, Comparator::NotIn);
        let span_key = comparison("span.attributes.`mlflow.llm.model` LIKE '%4o%'");
        assert_eq!(
            (span_key.prefix.as_deref(), span_key.key.as_str()),
            (Some("span"), "attributes.mlflow.llm.model")
        );
    }

    #[test]
    fn or_and_parentheses_nest() {
        let parsed = parse_filter("(params.a = '1' OR params.a = '2') and metrics.m > 0")
            .unwrap()
            .unwrap();
        let FilterExpression::And(children) = parsed else {
            panic!("expected AND")
        };
        assert!(matches!(&children[0], FilterExpression::Or(inner) if inner.len() == 2));
    }

    #[test]
    fn rejects_malformed_filters_with_reasons() {
        for bad in [
            "metrics.acc >> 1",
            "metrics.acc",
            "params.a = ",
            "params.a IN ()",
            "(params.a = '1'",
            "params.a = 'x",
        ] {
            let error = parse_filter(bad).unwrap_err();
            assert!(!error.reason.is_empty(), "{bad}");
        }
        assert!(parse_filter("metrics.acc >> 1").unwrap_err().reason.contains("'>>'"));
        assert_eq!(parse_filter("  ").unwrap(), None);
    }

    #[test]
    fn deep_long_and_wide_filters_are_refused_with_reasons() {
        let unbalanced = "(".repeat(3_000);
        assert!(parse_filter(&unbalanced).unwrap_err().reason.contains("nest deeper"));
        let balanced = format!("{}params.a = '1'{}", "(".repeat(40), ")".repeat(40));
        assert!(parse_filter(&balanced).unwrap_err().reason.contains("nest deeper"));
        let allowed = format!("{}params.a = '1'{}", "(".repeat(32), ")".repeat(32));
        assert!(parse_filter(&allowed).unwrap().is_some());
        // Depth counts open parentheses, not parenthesised groups in a row.
        let siblings = vec!["(params.a = '1')"; 100].join(" AND ");
        assert!(parse_filter(&siblings).unwrap().is_some());
        let many_terms = vec!["params.a = '1'"; 501].join(" OR ");
        assert!(
            parse_filter(&many_terms)
                .unwrap_err()
                .reason
                .contains("more than 500 comparisons")
        );
        let long_list = format!("run_id IN ({})", vec!["'x'"; 10_001].join(","));
        assert!(parse_filter(&long_list).unwrap_err().reason.contains("IN lists"));
        let huge = format!("params.a = '{}'", "é".repeat(60_000));
        let error = parse_filter(&huge).unwrap_err();
        assert!(error.reason.contains("more than the 100000 accepted"));
        assert!(error.filter.len() < 300);
        assert!(parse_order_clause(&"x".repeat(200_000)).is_err());
    }

    #[test]
    fn order_clauses() {
        let clause = parse_order_clause("metrics.`acc` DESC").unwrap();
        assert_eq!(
            (clause.prefix.as_deref(), clause.key.as_str(), clause.ascending),
            (Some("metrics"), "acc", false)
        );
        assert!(parse_order_clause("start_time").unwrap().ascending);
        assert!(parse_order_clause("start_time sideways").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, failure_persistence: None, ..Default::default() })]

        /// Filters built from the grammar's own pieces, nested and repeated at random, and raw text: the parser
        /// answers (a tree or a reason) and never panics, whatever the depth or length.
        #[test]
        fn generated_filters_never_panic(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("(".to_string()),
                    proptest::strategy::Just(")".to_string()),
                    proptest::strategy::Just(" AND ".to_string()),
                    proptest::strategy::Just(" OR ".to_string()),
                    proptest::strategy::Just("metrics.`a b` >= -1e308".to_string()),
                    proptest::strategy::Just("params.x IN ('a', 'b')".to_string()),
                    proptest::strategy::Just("tags.t LIKE '%\\\\'".to_string()),
                    proptest::strategy::Just("name IS NOT NULL".to_string()),
                    proptest::strategy::Just("'unterminated".to_string()),
                    "[\\PC]{0,8}",
                ],
                0..400,
            ),
            repeat in 1usize..50,
        ) {
            let filter = pieces.join("").repeat(repeat);
            let _ = parse_filter(&filter);
            let _ = parse_order_clause(&filter);
        }
    }
}
