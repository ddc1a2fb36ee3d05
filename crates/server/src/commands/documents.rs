//! The documents `loopline embed` reads: text, Markdown and HTML files (one document each), and JSONL and
//! Parquet files (one document per record, from a text field). Directories are walked in name order; hidden
//! entries and symbolic links to directories are skipped; files of other kinds inside a directory are skipped,
//! named on the command line they are refused.

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

/// The files under `paths`, in order, each with its kind.
fn files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Kind)>, String> {
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
            found.push((path.clone(), kind));
        }
        if found.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} files; embed fewer at a time"));
        }
    }
    Ok(found)
}

fn walk(directory: &Path, found: &mut Vec<(PathBuf, Kind)>) -> Result<(), String> {
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
            found.push((path, kind));
            if found.len() > MAX_FILES {
                return Err(format!("more than {MAX_FILES} files; embed fewer at a time"));
            }
        }
    }
    Ok(())
}

/// How a path is named in payloads: its absolute path with links resolved, so every spelling of one file
/// (relative from any directory, absolute, through a link) is one source and a rerun finds its chunks.
fn source_name(path: &Path) -> String {
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
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
    for (path, kind) in files(paths)? {
        let source = source_name(&path);
        match kind {
            Kind::Text => documents.push(Document {
                source,
                sections: plain(read_text(&path)?),
            }),
            Kind::Markdown => documents.push(Document {
                source,
                sections: markdown_sections(&read_text(&path)?),
            }),
            Kind::Html => documents.push(Document {
                source,
                sections: html_sections(&read_text(&path)?),
            }),
            Kind::JsonLines => {
                for (index, line) in read_text(&path)?.lines().enumerate() {
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
