//! The server side of `loopline data`: which objects the server lacks, uploads and downloads (each object
//! checked against its id on both ends), version registration, and the server's datasets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use loopline_pipelines::data::manifest::MAX_MANIFEST_BYTES;
use loopline_pipelines::data::workspace::data_path;
use loopline_pipelines::data::{ContentId, Pointer, Progress, Project, TreeState};
use loopline_tabular::collect::collect_columns;
use loopline_tabular::{DatasetProfile, FileFormat, TableSource};
use serde_json::{Value, json};

use super::data::{BytesBar, human_bytes, shown};
use super::rollout::{Client, ServerArgs, runtime_block};

/// Objects moved at once.
const TRANSFERS: usize = 4;
/// Times an upload waits for another upload of the same object.
const CONFLICT_RETRIES: usize = 600;
/// Ids asked about per request.
const IDS_PER_REQUEST: usize = 10_000;

/// Transfers: no overall deadline (an object may be gigabytes), but a stalled connection fails.
pub(crate) fn transfer_client(credentials: &super::credentials::ClientCredentials) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .default_headers(credentials.headers())
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| format!("cannot create an HTTP client: {e}"))
}

fn objects_path(id: &ContentId) -> String {
    format!("/api/loopline/v1/data/objects/{}", id.key())
}

/// Every object the pointers' versions consist of, with sizes.
fn objects_of_all(project: &Project, pointers: &[PathBuf]) -> Result<BTreeMap<ContentId, u64>, String> {
    let mut objects = BTreeMap::new();
    for pointer_path in pointers {
        let pointer = Pointer::read(pointer_path)?;
        let of = project
            .objects_of(&pointer)
            .map_err(|e| format!("{}: {e}", shown(project, pointer_path)))?;
        objects.extend(of);
    }
    Ok(objects)
}

async fn missing_ids(client: &Client, ids: &[ContentId]) -> Result<Vec<ContentId>, String> {
    let mut missing = Vec::new();
    for chunk in ids.chunks(IDS_PER_REQUEST) {
        let keys: Vec<String> = chunk.iter().map(ContentId::key).collect();
        let answer = client
            .ok(
                reqwest::Method::POST,
                "/api/loopline/v1/data/objects/missing",
                Some(json!({"ids": keys})),
            )
            .await?;
        for key in answer["missing"].as_array().into_iter().flatten() {
            missing.push(ContentId::parse(key.as_str().unwrap_or_default())?);
        }
    }
    Ok(missing)
}

/// For each pointer, how many of its objects the server lacks.
pub(crate) fn missing_on_server(
    server: &ServerArgs,
    project: &Project,
    pointers: &[PathBuf],
) -> Result<Vec<usize>, String> {
    let client = Client::new(server)?;
    runtime_block(async {
        let mut counts = Vec::new();
        for pointer_path in pointers {
            let pointer = Pointer::read(pointer_path)?;
            let ids: Vec<ContentId> = match project.objects_of(&pointer) {
                Ok(objects) => objects.into_iter().map(|(id, _)| id).collect(),
                Err(_) => vec![pointer.id()?],
            };
            counts.push(missing_ids(&client, &ids).await?.len());
        }
        Ok(counts)
    })
}

/// Uploads what the server lacks, then registers each pointer's version and writes its number back.
pub(crate) fn push(server: &ServerArgs, project: &Project, pointers: &[PathBuf]) -> Result<(), String> {
    let client = Client::new(server)?;
    let http = transfer_client(&super::credentials::ClientCredentials::from_env())?;
    runtime_block(async {
        let objects = objects_of_all(project, pointers)?;
        let ids: Vec<ContentId> = objects.keys().cloned().collect();
        let mut missing = missing_ids(&client, &ids).await?;
        // Files before manifests: a directory is complete on the server once its manifest arrives.
        missing.sort_by_key(ContentId::is_directory);
        let bytes: u64 = missing.iter().map(|id| objects[id]).sum();
        let bar = BytesBar::new();
        transfer_all(&bar, "uploading", bytes, &missing, |id| {
            let (http, base, bar) = (&http, &client.base, &bar);
            let path = project.cache().path_of(&id);
            async move { upload(http, base, &path, id, bar).await }
        })
        .await?;
        println!(
            "pushed {} object(s), {} ({} already on the server)",
            missing.len(),
            human_bytes(bytes),
            ids.len() - missing.len()
        );
        for pointer_path in pointers {
            register(&client, project, pointer_path).await?;
        }
        Ok(())
    })
}

async fn upload(http: &reqwest::Client, base: &str, path: &Path, id: ContentId, bar: &BytesBar) -> Result<(), String> {
    // Another push sending the same object is answered 409 until it is done: wait and send again (the
    // server then answers at once that it has the object).
    for _ in 0..CONFLICT_RETRIES {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let length = file
            .metadata()
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        let counter = bar.handle();
        let stream = tokio_util::io::ReaderStream::new(file).inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
        let response = http
            .put(format!("{base}{}", objects_path(&id)))
            .header(reqwest::header::CONTENT_LENGTH, length)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| format!("uploading object {id}: {e}"))?;
        if response.status().is_success() {
            return Ok(());
        }
        if response.status() != reqwest::StatusCode::CONFLICT {
            return Err(refusal(response, &format!("uploading object {id}")).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "uploading object {id}: another upload of it did not finish; push again"
    ))
}

/// What a server's refusal says.
async fn refusal(response: reqwest::Response, doing: &str) -> String {
    let status = response.status();
    let message = response
        .json::<Value>()
        .await
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string));
    format!("{doing}: the server answered {status}: {}", message.unwrap_or_default())
}

/// Moves objects, a few at a time, counting bytes on the bar.
async fn transfer_all<T: Clone, F, Fut>(
    bar: &BytesBar,
    label: &str,
    bytes: u64,
    ids: &[T],
    each: F,
) -> Result<(), String>
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    bar.phase(label, bytes);
    let done = futures::stream::iter(ids.iter().cloned())
        .map(each)
        .buffer_unordered(TRANSFERS)
        .try_collect::<Vec<()>>()
        .await;
    bar.finish();
    done.map(|_| ())
}

/// Registers one pointer's version (with its table's schema, row count and profile when the data is a table
/// in the working tree as added) and writes the number into the pointer.
async fn register(client: &Client, project: &Project, pointer_path: &Path) -> Result<(), String> {
    let mut pointer = Pointer::read(pointer_path)?;
    let mut body = json!({
        "hash": pointer.hash,
        "size": pointer.size,
        "files": pointer.files,
        "source": shown(project, &data_path(pointer_path, &pointer)),
    });
    if let Some((rows, schema, profile)) = table_facts(project, pointer_path, &pointer)? {
        body["rows"] = json!(rows);
        body["schema"] = schema;
        body["profile"] = profile;
    }
    let path = format!("/api/loopline/v1/datasets/{}/versions", pointer.dataset);
    let answer = client.ok(reqwest::Method::POST, &path, Some(body)).await?;
    let version = answer["version"]["version"]
        .as_i64()
        .ok_or("the server's answer has no version number")?;
    let created = answer["created"].as_bool().unwrap_or(false);
    println!(
        "{:<32} {} v{version}",
        shown(project, pointer_path),
        if created {
            "registered as"
        } else {
            "already registered as"
        }
    );
    if pointer.version != Some(version) {
        pointer.version = Some(version);
        pointer.write(pointer_path)?;
    }
    Ok(())
}

/// Rows, schema and profile of a one-file table whose working copy is the version being pushed.
fn table_facts(
    project: &Project,
    pointer_path: &Path,
    pointer: &Pointer,
) -> Result<Option<(u64, Value, Value)>, String> {
    let data = data_path(pointer_path, pointer);
    if pointer.id()?.is_directory() || FileFormat::detect(&data).is_err() {
        return Ok(None);
    }
    if project.status(pointer_path)?.tree != TreeState::Unchanged {
        return Ok(None);
    }
    table_facts_at(&data, &pointer.dataset).map(Some)
}

/// Rows, schema and profile of the table at `data`, as a version of `dataset` records them.
pub(crate) fn table_facts_at(data: &Path, dataset: &str) -> Result<(u64, Value, Value), String> {
    let source = TableSource::open(data).map_err(|e| e.to_string())?;
    let columns = collect_columns(&source, None, |_| {}).map_err(|e| e.to_string())?;
    let rows = columns.first().map(|(_, v)| v.rows()).unwrap_or(0);
    let schema: Vec<Value> = source
        .schema()
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let profile = DatasetProfile::of(dataset, rows, &columns);
    let profile = serde_json::to_value(&profile).map_err(|e| e.to_string())?;
    Ok((rows, Value::Array(schema), profile))
}

/// Uploads one file unless the server has it, then registers it as a version of `dataset` described by
/// `version` (hash, size, files and the rest); the server's answer.
pub(crate) fn push_file(
    server: &ServerArgs,
    path: &Path,
    (id, size): (&ContentId, u64),
    dataset: &str,
    version: Value,
) -> Result<Value, String> {
    let client = Client::new(server)?;
    let http = transfer_client(&super::credentials::ClientCredentials::from_env())?;
    runtime_block(async {
        if !missing_ids(&client, std::slice::from_ref(id)).await?.is_empty() {
            let bar = BytesBar::new();
            bar.phase("uploading", size);
            let uploaded = upload(&http, &client.base, path, id.clone(), &bar).await;
            bar.finish();
            uploaded?;
        }
        let route = format!("/api/loopline/v1/datasets/{dataset}/versions");
        client.ok(reqwest::Method::POST, &route, Some(version)).await
    })
}

/// Downloads what the cache lacks of the pointers' versions (manifests first, to know the files).
pub(crate) fn pull(server: &ServerArgs, project: &Project, pointers: &[PathBuf]) -> Result<(), String> {
    let client = Client::new(server)?;
    let http = transfer_client(&super::credentials::ClientCredentials::from_env())?;
    runtime_block(async {
        let bar = BytesBar::new();
        for pointer_path in pointers {
            let id = Pointer::read(pointer_path)?.id()?;
            if id.is_directory() && !project.cache().contains(&id) {
                download(&http, &client.base, project, (id, MAX_MANIFEST_BYTES), &bar).await?;
            }
        }
        let wanted = objects_of_all(project, pointers)?;
        let lacking: Vec<(ContentId, u64)> = wanted
            .into_iter()
            .filter(|(id, _)| !project.cache().contains(id))
            .collect();
        let bytes = lacking.iter().map(|(_, size)| size).sum();
        transfer_all(&bar, "downloading", bytes, &lacking, |object| {
            download(&http, &client.base, project, object, &bar)
        })
        .await?;
        println!("pulled {} object(s), {}", lacking.len(), human_bytes(bytes));
        Ok(())
    })
}

/// Puts one version's content (a file, or a manifest and its files) into the project's cache, downloading
/// what it lacks.
pub(crate) async fn fetch_content(
    http: &reqwest::Client,
    base: &str,
    project: &Project,
    (id, size): (&ContentId, u64),
    bar: &BytesBar,
) -> Result<(), String> {
    if id.is_directory() && !project.cache().contains(id) {
        download(http, base, project, (id.clone(), MAX_MANIFEST_BYTES), bar).await?;
    }
    let wanted = if id.is_directory() {
        let manifest = project.cache().manifest(id)?;
        manifest
            .entries()
            .iter()
            .map(|entry| entry.id().map(|object| (object, entry.size)))
            .collect::<Result<Vec<_>, String>>()?
    } else {
        vec![(id.clone(), size)]
    };
    let lacking: Vec<(ContentId, u64)> = wanted
        .into_iter()
        .filter(|(object, _)| !project.cache().contains(object))
        .collect();
    let bytes = lacking.iter().map(|(_, size)| size).sum();
    transfer_all(bar, "downloading", bytes, &lacking, |object| {
        download(http, base, project, object, bar)
    })
    .await
}

async fn download(
    http: &reqwest::Client,
    base: &str,
    project: &Project,
    (id, limit): (ContentId, u64),
    bar: &BytesBar,
) -> Result<(), String> {
    let mut response = http
        .get(format!("{base}{}", objects_path(&id)))
        .send()
        .await
        .map_err(|e| format!("downloading object {id}: {e}"))?;
    if !response.status().is_success() {
        return Err(refusal(response, &format!("downloading object {id}")).await);
    }
    let mut staged = project.cache().stage(&id)?;
    let mut received = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("downloading object {id}: {e}"))?
    {
        received += chunk.len() as u64;
        if received > limit {
            return Err(format!(
                "downloading object {id}: the server sent more than its {limit} bytes"
            ));
        }
        staged.write(&chunk)?;
        bar.advance(chunk.len() as u64);
    }
    staged.commit()
}

/// Garbage collection in the server's store.
pub(crate) fn collect_on_server(server: &ServerArgs, dry_run: bool, grace_seconds: u32) -> Result<(), String> {
    let client = Client::new(server)?;
    let answer = runtime_block(client.ok(
        reqwest::Method::POST,
        "/api/loopline/v1/data/gc",
        Some(json!({"dry_run": dry_run, "grace_seconds": grace_seconds})),
    ))?;
    let report = &answer["report"];
    let number = |key: &str| report[key].as_u64().unwrap_or(0);
    println!(
        "{} object(s) stored ({}); {} no version needs ({}); {} kept as written in the last {grace_seconds} s; {} {}",
        number("objects"),
        human_bytes(number("bytes")),
        number("unreferenced"),
        human_bytes(number("unreferenced_bytes")),
        number("kept_recent"),
        if dry_run { "would remove" } else { "removed" },
        if dry_run {
            number("unreferenced") - number("kept_recent")
        } else {
            number("removed")
        }
    );
    Ok(())
}

/// The server's datasets.
pub(crate) fn list(server: &ServerArgs) -> Result<(), String> {
    let client = Client::new(server)?;
    let answer = runtime_block(client.ok(reqwest::Method::GET, "/api/loopline/v1/datasets", None))?;
    println!(
        "{:<32} {:>8} {:>10} {:>12}  hash",
        "dataset", "version", "files", "size"
    );
    for dataset in answer["datasets"].as_array().into_iter().flatten() {
        print_version(&dataset["latest"]);
    }
    Ok(())
}

/// A dataset's versions.
pub(crate) fn versions(server: &ServerArgs, name: &str) -> Result<(), String> {
    let client = Client::new(server)?;
    let path = format!("/api/loopline/v1/datasets/{name}/versions?limit=1000");
    let answer = runtime_block(client.ok(reqwest::Method::GET, &path, None))?;
    println!(
        "{:<32} {:>8} {:>10} {:>12}  hash",
        "dataset", "version", "files", "size"
    );
    for version in answer["versions"].as_array().into_iter().flatten() {
        print_version(version);
    }
    Ok(())
}

fn print_version(version: &Value) {
    let hash = version["hash"].as_str().unwrap_or_default();
    println!(
        "{:<32} {:>8} {:>10} {:>12}  {}",
        version["name"].as_str().unwrap_or_default(),
        version["version"].to_string(),
        version["files"].to_string(),
        human_bytes(version["size"].as_u64().unwrap_or(0)),
        hash.get(..16).unwrap_or(hash)
    );
}
