//! CSV type inference over the whole file, so a value late in the file cannot contradict the inferred type, and a
//! column that mixes numbers and text is reported with an example instead of silently becoming text.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use arrow_array::types::{Float64Type, Int64Type};
use arrow_cast::parse::Parser;
use arrow_schema::{DataType, Field, Schema};
use regex::Regex;

use crate::error::TabularError;

/// How a CSV file is laid out.
#[derive(Debug, Clone)]
pub struct CsvLayout {
    /// Field separator: tab for `.tsv`, comma otherwise.
    pub delimiter: u8,
}

impl CsvLayout {
    /// The layout implied by a file name.
    pub fn for_path(path: &Path) -> CsvLayout {
        let tsv = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
        CsvLayout {
            delimiter: if tsv { b'\t' } else { b',' },
        }
    }
}

/// Cells read as missing: empty, `NA`, `N/A`, `null`, `NULL`, `None`.
pub fn null_pattern() -> Regex {
    Regex::new("^(NA|N/A|n/a|null|NULL|None)?$").expect("a valid pattern")
}

/// What the cells of one column looked like.
#[derive(Default)]
struct ColumnGuess {
    cells: u64,
    integers: u64,
    floats: u64,
    booleans: u64,
    text: u64,
    first_text: Option<(String, u64)>,
    first_number: Option<(String, u64)>,
}

impl ColumnGuess {
    fn observe(&mut self, cell: &str, line: u64) {
        self.cells += 1;
        if Int64Type::parse(cell).is_some() {
            self.integers += 1;
            self.first_number.get_or_insert_with(|| (cell.to_string(), line));
        } else if Float64Type::parse(cell).is_some() {
            self.floats += 1;
            self.first_number.get_or_insert_with(|| (cell.to_string(), line));
        } else if cell.eq_ignore_ascii_case("true") || cell.eq_ignore_ascii_case("false") {
            self.booleans += 1;
        } else {
            self.text += 1;
            self.first_text.get_or_insert_with(|| (cell.to_string(), line));
        }
    }

    /// The column's type, or a description of the mix when numbers and text are mixed with numbers in the majority.
    fn data_type(&self, name: &str) -> Result<DataType, String> {
        let numbers = self.integers + self.floats;
        if self.cells == 0 {
            return Ok(DataType::Null);
        }
        if numbers == self.cells {
            return Ok(if self.floats == 0 {
                DataType::Int64
            } else {
                DataType::Float64
            });
        }
        if self.booleans == self.cells {
            return Ok(DataType::Boolean);
        }
        if self.text > 0 && numbers >= self.text {
            let (text, text_line) = self.first_text.clone().unwrap_or_default();
            let (number, number_line) = self.first_number.clone().unwrap_or_default();
            return Err(format!(
                "column '{name}' holds {numbers} numbers (first {number:?} on line {number_line}) and {} text values \
                 (first {text:?} on line {text_line})",
                self.text
            ));
        }
        Ok(DataType::Utf8)
    }
}

/// Reads the whole file once and returns its schema and row count.
pub fn infer_csv_schema(path: &Path, file: File, layout: &CsvLayout) -> Result<(Schema, u64), TabularError> {
    let unreadable = |message: String| TabularError::Unreadable {
        path: path.to_path_buf(),
        format: "CSV",
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(layout.delimiter)
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| unreadable(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.is_empty() || headers.iter().all(String::is_empty) {
        return Err(unreadable(
            "it has no header row; the first line must name the columns".to_string(),
        ));
    }
    if let Some(duplicate) = headers
        .iter()
        .enumerate()
        .find(|(i, h)| headers[..*i].contains(h))
        .map(|(_, h)| h)
    {
        return Err(unreadable(format!("the header names column '{duplicate}' twice")));
    }
    let nulls = null_pattern();
    let mut guesses: Vec<ColumnGuess> = headers.iter().map(|_| ColumnGuess::default()).collect();
    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => return Err(unreadable(error.to_string())),
        }
        rows += 1;
        let line = record.position().map(|p| p.line()).unwrap_or(rows + 1);
        for (cell, guess) in record.iter().zip(guesses.iter_mut()) {
            if !nulls.is_match(cell) {
                guess.observe(cell, line);
            }
        }
    }
    let mut fields = Vec::with_capacity(headers.len());
    for (name, guess) in headers.iter().zip(&guesses) {
        let data_type = guess.data_type(name).map_err(|message| TabularError::MixedTypes {
            path: path.to_path_buf(),
            message,
        })?;
        fields.push(Field::new(name, data_type, true));
    }
    Ok((Schema::new(fields), rows))
}
