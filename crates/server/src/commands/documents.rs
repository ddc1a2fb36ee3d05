//! The documents `loopline embed` reads: text, Markdown and HTML files (one document each), and JSONL and
//! Parquet files (one document per record, from a text field). Directories are walked in name order; hidden
//! entries and symbolic links to directories are skipped; files of other kinds inside a directory are skipped,
//! named on the command line they are refused. Text is UTF-8 (a byte order mark is dropped) or UTF-16 with a
//! byte order mark; a file that is neither (binary, or another encoding) is skipped with a warning inside a
//! directory and refused when named.

use loopline_embeddings::chunk::{Section, html_sections, markdown_sections};
use std::path::{Path, PathBuf};

/// The largest file read (a document is held whole, with a few copies while it is cut into chunks).
const MAX_FILE_BYTES: u64 = 64 << 20;
/// The most files one run reads.
const MAX_FILES: usize = 1_000_000;

/// A document: where it came from and its sections.
#[derive(Debug)]
pub struct Document {
    /// The file (and `#L<line>` or `#<row>` for a record of a JSONL or Parquet file).
    pub source: String,
    /// Its sections.
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Markdown,
    Html,
    JsonLines,
    Parquet,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match extension.as_str() {
        "txt" | "text" => Kind::Text,
        "md" | "markdown" => Kind::Markdown,
        "html" | "htm" => Kind::Html,
        "jsonl" | "ndjson" => Kind::JsonLines,
        "parquet" => Kind::Parquet,
        _ => return None,
    })
}

/// The files under `paths`, in order, each with its kind and whether it was named itself.
fn files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Kind, bool)>, String> {
    let mut found = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|error| format!("{}: {error}", path.display()))?;
        if metadata.is_dir() {
            walk(path, &mut found)?;
        } else {
            let kind = kind_of(path).ok_or_else(|| {
                format!(
                    "{}: not a kind loopline embed reads (.txt, .md, .markdown, .html, .htm, .jsonl, .ndjson, .parquet)",
                    path.display()
                )
            })?;
            found.push((path.clone(), kind, true));
        }
        if found.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} files; embed fewer at a time"));
        }
    }
    Ok(found)
}

fn walk(directory: &Path, found: &mut Vec<(PathBuf, Kind, bool)>) -> Result<(), String> {
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(directory)
        .map_err(|error| format!("{}: {error}", directory.display()))?
        .collect::<Result<_, _>>()
        .map_err(|error| format!("{}: {error}", directory.display()))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|error| format!("{}: {error}", path.display()))?;
        if file_type.is_dir() {
            walk(&path, found)?;
        } else if (file_type.is_file() || (file_type.is_symlink() && path.is_file()))
            && let Some(kind) = kind_of(&path)
        {
            found.push((path, kind, false));
            if found.len() > MAX_FILES {
                return Err(format!("more than {MAX_FILES} files; embed fewer at a time"));
            }
        }
    }
    Ok(())
}

/// How a path is named in payloads: its absolute path with links resolved, so every spelling of one file
/// (relative from any directory, absolute, through a link) is one source and a rerun finds its chunks.
pub fn source_name(path: &Path) -> String {
    let resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    resolved.to_string_lossy().into_owned()
}

fn read_text(path: &Path) -> Result<String, String> {
    let size = std::fs::metadata(path)
        .map_err(|error| format!("{}: {error}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {size} bytes, more than the {MAX_FILE_BYTES} read; split it",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
    decode_text(&bytes).map_err(|problem| {
        format!(
            "{}: {problem}; convert it to UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)",
            path.display()
        )
    })
}

/// Text from a file's bytes: UTF-8 (a byte order mark dropped), or UTF-16 after its byte order mark (an
/// unpaired surrogate becomes U+FFFD). Anything else, or text holding NUL bytes, is not read.
fn decode_text(bytes: &[u8]) -> Result<String, &'static str> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        if !rest.len().is_multiple_of(2) {
            return Err("UTF-16 cut short (an odd number of bytes)");
        }
        let units = rest.chunks_exact(2).map(|pair| unit([pair[0], pair[1]]));
        Ok(char::decode_utf16(units)
            .map(|unit| unit.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect::<String>())
    };
    let text = match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest)
            .map(str::to_string)
            .map_err(|_| "not UTF-8 text")?,
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes)?,
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes)?,
        _ => std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| "not UTF-8 text (binary, or another encoding)")?,
    };
    if text.contains('\0') {
        return Err("binary (it holds NUL bytes)");
    }
    Ok(text)
}

fn plain(text: String) -> Vec<Section> {
    vec![Section {
        headings: Vec::new(),
        text,
    }]
}

/// The documents under `paths`; records of JSONL and Parquet files take their text from `text_field`.
pub fn read(paths: &[PathBuf], text_field: &str) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    for (path, kind, named) in files(paths)? {
        let source = source_name(&path);
        let text = match kind {
            Kind::Parquet => None,
            _ => match read_text(&path) {
                Ok(text) => Some(text),
                Err(problem) if !named => {
                    eprintln!("warning: skipped {problem}");
                    continue;
                }
                Err(problem) => return Err(problem),
            },
        };
        let text = text.unwrap_or_default();
        match kind {
            Kind::Text => documents.push(Document {
                source,
                sections: plain(text),
            }),
            Kind::Markdown => documents.push(Document {
                source,
                sections: markdown_sections(&text),
            }),
            Kind::Html => documents.push(Document {
                source,
                sections: html_sections(&text),
            }),
            Kind::JsonLines => {
                for (index, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let record: serde_json::Value = serde_json::from_str(line)
                        .map_err(|error| format!("{source} line {}: not JSON: {error}", index + 1))?;
                    let text = record.get(text_field).and_then(|value| value.as_str()).ok_or_else(|| {
                        format!(
                            "{source} line {}: no string field '{text_field}' (choose it with --text-field)",
                            index + 1
                        )
                    })?;
                    documents.push(Document {
                        source: format!("{source}#L{}", index + 1),
                        sections: plain(text.to_string()),
                    });
                }
            }
            Kind::Parquet => parquet_documents(&path, &source, text_field, &mut documents)?,
        }
    }
    Ok(documents)
}

fn parquet_documents(path: &Path, source: &str, text_field: &str, documents: &mut Vec<Document>) -> Result<(), String> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let table = loopline_tabular::read::TableSource::open(path).map_err(|error| error.to_string())?;
    if !table.column_names().iter().any(|name| name == text_field) {
        return Err(format!(
            "{source}: no column '{text_field}' (choose it with --text-field; it has {})",
            table.column_names().join(", ")
        ));
    }
    let mut row = 0usize;
    for batch in table
        .batches(Some(&[text_field.to_string()]))
        .map_err(|error| error.to_string())?
    {
        let batch = batch.map_err(|error| error.to_string())?;
        let column = batch.column(0);
        let text = |data_type: &arrow_schema::DataType| {
            matches!(
                data_type,
                arrow_schema::DataType::Utf8 | arrow_schema::DataType::LargeUtf8 | arrow_schema::DataType::Utf8View
            )
        };
        let readable = match column.data_type() {
            arrow_schema::DataType::Dictionary(_, values) => text(values),
            other => text(other),
        };
        if !readable {
            return Err(format!(
                "{source}: column '{text_field}' is {}, not text",
                column.data_type()
            ));
        }
        let cast = arrow_cast::cast(column, &arrow_schema::DataType::Utf8)
            .map_err(|error| format!("{source}: column '{text_field}': {error}"))?;
        let strings = cast.as_string::<i32>();
        for index in 0..strings.len() {
            if strings.is_valid(index) {
                documents.push(Document {
                    source: format!("{source}#{row}"),
                    sections: plain(strings.value(index).to_string()),
                });
            }
            row += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::decode_text;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_are_text_without_nul_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(text) = decode_text(&bytes) {
                prop_assert!(!text.contains('\0'));
            }
        }
    }

    #[test]
    fn text_is_utf8_or_utf16_with_a_byte_order_mark_and_nothing_else() {
        assert_eq!(decode_text("héllo".as_bytes()).unwrap(), "héllo");
        assert_eq!(decode_text(b"\xEF\xBB\xBFplain").unwrap(), "plain");
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("hé 日本".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode_text(&le).unwrap(), "hé 日本");
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(decode_text(&be).unwrap(), "hé");
        assert_eq!(decode_text(&[0xFF, 0xFE, 0x00, 0xD8, 0x41, 0x00]).unwrap(), "\u{FFFD}A");
        assert!(decode_text(&[0xFF, 0xFE, 0x41]).unwrap_err().contains("odd"));
        assert!(decode_text(b"caf\xE9 latin-1").unwrap_err().contains("not UTF-8"));
        assert!(decode_text(b"\x7FELF\x02\x01\x00\x00").unwrap_err().contains("NUL"));
        // UTF-16 without its mark is binary here (every other byte NUL).
        assert!(decode_text(&"ab".encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<_>>()).is_err());
    }
}
