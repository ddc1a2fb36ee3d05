//! Training sets with Feast's point-in-time semantics, computed out of core.
//!
//! For each feature view, the entity rows (key, time, row number) and the view's source rows (key, event time,
//! created time, features) are split by a hash of the key into partitions sized to fit the memory limit; with
//! one partition nothing touches the disk. Each partition is joined in memory by sorting both sides and walking
//! them together ([`asof`]). A last pass reads the entity frame again in order and merges every view's joined
//! partitions back onto it, so the output keeps the entity frame's rows in their order with all its columns.

mod asof;
mod derived;
pub(crate) mod inputs;
mod output;
mod spill;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::{Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::definitions::Definitions;
use crate::error::FeatureError;
use crate::keys;
use crate::refs::{self, ViewSelection, Wanted};
use derived::DerivedColumns;
use inputs::{EntityFrame, ViewSource};
use output::ViewMerger;
use spill::{Sink, Stored};

pub use asof::match_rows;

/// What to build.
#[derive(Debug, Clone)]
pub struct HistoricalRequest {
    /// The definitions to resolve features against.
    pub definitions: Definitions,
    /// The features or the feature service.
    pub wanted: Wanted,
    /// `view__feature` column names.
    pub full_feature_names: bool,
    /// The entity frame (Parquet, CSV or Arrow).
    pub entities: PathBuf,
    /// Where the training set is written (Parquet).
    pub output: PathBuf,
    /// Roughly how much memory the join may hold at once, in bytes.
    pub memory_limit: usize,
    /// Where spill files go (a private directory is made inside); the output's directory by default, since
    /// the system temporary directory is often in memory.
    pub spill_dir: Option<PathBuf>,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct HistoricalSummary {
    /// Rows written (the entity frame's rows).
    pub rows: u64,
    /// The output's columns.
    pub columns: Vec<String>,
    /// Source rows read, over all views.
    pub source_rows: u64,
    /// For each view: its name, the number of partitions used and how many entity rows found a value.
    pub views: Vec<(String, usize, u64)>,
}

/// Receives progress: a stage begins (with its total rows when known), then rows are done.
pub trait Progress: Sync {
    /// A new stage.
    fn stage(&self, label: &str, total_rows: Option<u64>);
    /// Rows done in the current stage.
    fn advance(&self, rows: u64);
}

/// Progress nobody watches.
pub struct Silent;

impl Progress for Silent {
    fn stage(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
}

/// Most partitions per view (each is a spill file open at once in the last pass).
const MAX_PARTITIONS: usize = 256;
/// Scratch names (with the process id): the spill directory and the output being written.
const SPILL_KIND: &str = ".loopline-features-spill";
const PARTIAL_KIND: &str = ".loopline-training-set";

/// Refuses an output that is a directory, or one of the run's own inputs (it would be overwritten).
fn check_output(output: &Path, entities: &Path, sources: &[ViewSource]) -> Result<(), FeatureError> {
    if output.is_dir() {
        return Err(FeatureError::io(
            "writing the output",
            output,
            "it is a directory; name a file",
        ));
    }
    let extension = output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if !matches!(extension.as_deref(), None | Some("parquet" | "pq")) {
        return Err(FeatureError::io(
            "writing the output",
            output,
            "training sets are written as Parquet; name the output .parquet",
        ));
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(FeatureError::io(
            "writing the output",
            output,
            format!("the directory {} does not exist", parent.display()),
        ));
    }
    let Ok(target) = std::fs::canonicalize(output) else {
        return Ok(());
    };
    let inputs = std::iter::once(entities.to_path_buf()).chain(
        sources
            .iter()
            .flat_map(|s| s.files.iter().map(|f| f.path().to_path_buf())),
    );
    for input in inputs {
        if std::fs::canonicalize(&input).is_ok_and(|p| p == target) {
            return Err(FeatureError::io(
                "writing the output",
                output,
                format!(
                    "it is an input of this run ({}); write the training set elsewhere",
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Opens every view's source files and checks them against the definitions: the key, time and feature columns
/// exist with fitting types, and the key types agree with the entities' declared value types. One result per
/// view: its source rows (when the files record them), or what is wrong.
pub fn check_sources(definitions: &Definitions) -> Vec<(String, Result<Option<u64>, FeatureError>)> {
    definitions
        .views
        .values()
        .map(|view| {
            let selection = ViewSelection {
                view: view.clone(),
                features: view.features.iter().map(|f| (f.name.clone(), f.name.clone())).collect(),
            };
            let source = definitions.sources.get(&view.source).expect("definitions were checked");
            let checked = ViewSource::open(&selection, source, None).and_then(|opened| {
                declared_key_types(definitions, view, &opened)?;
                Ok(opened.rows)
            });
            (view.name.clone(), checked)
        })
        .collect()
}

/// Refuses a source key column whose type is not the entity's declared value type.
fn declared_key_types(
    definitions: &Definitions,
    view: &crate::definitions::FeatureView,
    opened: &ViewSource,
) -> Result<(), FeatureError> {
    for (key, column) in view.join_keys.iter().zip(&opened.key_columns) {
        let declared = view
            .entities
            .iter()
            .filter_map(|e| definitions.entities.get(e))
            .find(|e| e.join_keys.contains(key))
            .and_then(|e| e.value_type);
        let Some(declared) = declared else {
            continue;
        };
        for table in &opened.files {
            let Ok(field) = table.schema().field_with_name(column) else {
                continue;
            };
            let fits = declared
                .key_kind()
                .is_none_or(|expected| keys::KeyKind::of(field.data_type()) == Some(expected));
            if !fits {
                return Err(FeatureError::Source {
                    source_name: opened.source.name.clone(),
                    path: table.path().to_path_buf(),
                    message: format!(
                        "join key `{key}` (column `{column}`) is {} but its entity's value_type is {}",
                        field.data_type(),
                        declared.name()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Builds the training set and writes it to `request.output`; nothing is left at the output path on failure.
pub fn build_training_set(
    request: &HistoricalRequest,
    progress: &dyn Progress,
) -> Result<HistoricalSummary, FeatureError> {
    let selection = refs::resolve(&request.definitions, &request.wanted, request.full_feature_names)?;
    let entity = EntityFrame::open(&request.entities)?;
    let entity_columns = entity.table.column_names();
    let outputs = selection.output_names();
    let clashes: Vec<&String> = outputs.iter().filter(|o| entity_columns.contains(o)).collect();
    if !clashes.is_empty() {
        return Err(FeatureError::EntityFrame {
            path: request.entities.clone(),
            message: format!(
                "its columns {clashes:?} have the names of requested features; rename them or ask for full \
                 feature names"
            ),
        });
    }
    let mut sources = Vec::with_capacity(selection.views.len());
    for view in &selection.views {
        for key in &view.view.join_keys {
            entity.key_kind(key, &view.view.name)?;
        }
        let source = request
            .definitions
            .sources
            .get(&view.view.source)
            .expect("definitions were checked");
        sources.push(ViewSource::open(view, source, Some(&entity))?);
    }

    // The joined batches hold the entity columns and every selected stored feature (hidden inputs of on-demand
    // features included); on-demand features are computed from them and the hidden ones dropped.
    let mut fields: Vec<Field> = entity
        .table
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let entity_fields = fields.len();
    for (view, source) in selection.views.iter().zip(&sources) {
        for ((_, out), data_type) in view.features.iter().zip(&source.feature_types) {
            fields.push(Field::new(out, data_type.clone(), true));
        }
    }
    let joined_schema: SchemaRef = Arc::new(Schema::new(fields));
    let derived = DerivedColumns::new(&selection, &joined_schema, entity_fields, &request.entities)?;
    let schema = derived.schema();

    let output_dir = request
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    check_output(&request.output, &request.entities, &sources)?;
    crate::scratch::sweep(&output_dir, SPILL_KIND);
    crate::scratch::sweep(&output_dir, PARTIAL_KIND);
    if let Some(dir) = &request.spill_dir {
        crate::scratch::sweep(dir, SPILL_KIND);
    }
    let entity_rows = entity.table.rows();
    // Views are joined side by side, each with its share of the memory limit.
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(selection.views.len())
        .max(1);
    let share = request.memory_limit / threads;
    let partitions: Vec<usize> = selection
        .views
        .iter()
        .zip(&sources)
        .map(|(view, source)| partition_count(entity_rows, source, view, share))
        .collect();
    let spill_root = if partitions.iter().any(|&p| p > 1) {
        let parent = request.spill_dir.clone().unwrap_or_else(|| output_dir.clone());
        Some(
            tempfile::Builder::new()
                .prefix(&crate::scratch::prefix(SPILL_KIND))
                .tempdir_in(&parent)
                .map_err(|e| FeatureError::io("creating a spill directory", &parent, e))?,
        )
    } else {
        None
    };
    if let Some(dir) = &spill_root {
        crate::scratch::track(dir.path());
    }
    let total_partitions: usize = partitions.iter().sum();
    let out_row_bytes = 8 + 16 * outputs.len().max(1);
    let chunk_rows = (request.memory_limit / 4 / (total_partitions.max(1) * out_row_bytes)).clamp(1024, 65_536);

    let total_rows = sources
        .iter()
        .map(|s| s.rows)
        .chain(std::iter::repeat_n(entity_rows, sources.len()))
        .sum::<Option<u64>>();
    progress.stage(
        &format!("joining {} feature view(s)", selection.views.len()),
        total_rows,
    );
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<Joined, FeatureError>>>> =
        selection.views.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(view) = selection.views.get(index) else {
                        break;
                    };
                    let count = partitions[index];
                    let dir = if count > 1 {
                        spill_root.as_ref().map(|d| d.path())
                    } else {
                        None
                    };
                    let joined = join_view(view, &sources[index], &entity, count, dir, chunk_rows, progress);
                    let failed = joined.is_err();
                    *results[index].lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(joined);
                    if failed {
                        // The others stop at their next view; the first error is reported.
                        next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let mut joined: Vec<Vec<Stored>> = Vec::with_capacity(selection.views.len());
    let mut summary_views = Vec::new();
    let mut source_rows = 0u64;
    let mut first_error = None;
    for ((view, result), &count) in selection.views.iter().zip(results).zip(&partitions) {
        match result.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(Ok((parts, read, matched))) => {
                source_rows += read;
                summary_views.push((view.view.name.clone(), count, matched));
                joined.push(parts);
            }
            Some(Err(error)) => {
                first_error.get_or_insert(error);
            }
            None => {}
        }
    }
    if let Some(error) = first_error {
        for parts in joined {
            parts.into_iter().for_each(Stored::discard);
        }
        return Err(error);
    }

    progress.stage("writing the training set", entity_rows);
    let mut mergers = selection
        .views
        .iter()
        .zip(&joined)
        .map(|(view, parts)| ViewMerger::new(view.view.join_keys.clone(), parts))
        .collect::<Result<Vec<_>, _>>()?;
    let temporary = tempfile::Builder::new()
        .prefix(&crate::scratch::prefix(PARTIAL_KIND))
        .suffix(".partial")
        .tempfile_in(&output_dir)
        .map_err(|e| FeatureError::io("creating the output", &output_dir, e))?;
    crate::scratch::track(temporary.path());
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let file = temporary
        .reopen()
        .map_err(|e| FeatureError::io("creating the output", temporary.path(), e))?;
    let mut writer = ArrowWriter::try_new(
        std::io::BufWriter::with_capacity(1 << 20, file),
        schema.clone(),
        Some(properties),
    )
    .map_err(|e| FeatureError::io("writing the output", &request.output, e))?;
    let mut row = 0u64;
    for batch in entity.table.batches(None)? {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let mut columns = batch.columns().to_vec();
        for merger in &mut mergers {
            columns.extend(merger.next_columns(&batch, row)?);
        }
        let columns = derived.apply(&columns, batch.num_rows())?;
        let out = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| FeatureError::io("writing the output", &request.output, e))?;
        writer
            .write(&out)
            .map_err(|e| FeatureError::io("writing the output (is the disk full?)", &request.output, e))?;
        row += batch.num_rows() as u64;
        progress.advance(batch.num_rows() as u64);
    }
    writer
        .close()
        .map_err(|e| FeatureError::io("writing the output (is the disk full?)", &request.output, e))?;
    temporary
        .as_file()
        .sync_all()
        .map_err(|e| FeatureError::io("writing the output", &request.output, e))?;
    // A training set is shared like any data file (the temporary file was private to this user).
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = temporary
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    let partial = temporary.path().to_path_buf();
    temporary
        .persist(&request.output)
        .map_err(|e| FeatureError::io("moving the output into place", &request.output, e.error))?;
    crate::scratch::untrack(&partial);
    if let Some(dir) = &spill_root {
        crate::scratch::untrack(dir.path());
    }
    for parts in joined {
        parts.into_iter().for_each(Stored::discard);
    }
    Ok(HistoricalSummary {
        rows: row,
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        source_rows,
        views: summary_views,
    })
}

/// How many partitions a view needs so one partition of entity and source rows, with its sort orders, fits in
/// half the memory limit.
fn partition_count(entity_rows: Option<u64>, source: &ViewSource, view: &ViewSelection, limit: usize) -> usize {
    let key_bytes = 16 + 12 * view.view.join_keys.len() as u64;
    let entity_bytes = entity_rows.unwrap_or(0) * (key_bytes + 24);
    let source_bytes = source.rows.unwrap_or(0) * (key_bytes + 28 + 16 * view.features.len() as u64);
    let needed = (entity_bytes + source_bytes).saturating_mul(2);
    let half = (limit as u64 / 2).max(1);
    (needed.div_ceil(half) as usize).clamp(1, MAX_PARTITIONS)
}

type Joined = (Vec<Stored>, u64, u64);

/// Partitions one view's entity and source rows and joins each partition.
fn join_view(
    view: &ViewSelection,
    source: &ViewSource,
    entity: &EntityFrame,
    partitions: usize,
    dir: Option<&Path>,
    chunk_rows: usize,
    progress: &dyn Progress,
) -> Result<Joined, FeatureError> {
    let name = &view.view.name;
    let entity_schema = inputs::entity_schema();
    let outputs: Vec<String> = view.features.iter().map(|(_, out)| out.clone()).collect();
    let source_schema = source.prepared_schema(&outputs);
    let file_name = |kind: &str, p: usize| format!("{}-{kind}-{p}.arrows", sanitize(name));

    let mut entity_sinks = (0..partitions)
        .map(|p| Sink::new(&entity_schema, dir, &file_name("entities", p)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut projection = view.view.join_keys.clone();
    if !projection.contains(&entity.time_column) {
        projection.push(entity.time_column.clone());
    }
    let mut row = 0u64;
    for batch in entity.table.batches(Some(&projection))? {
        let batch = batch?;
        let prepared = inputs::prepare_entities(
            &batch,
            &view.view.join_keys,
            &entity.time_column,
            row,
            entity.table.path(),
        )?;
        row += batch.num_rows() as u64;
        scatter(prepared, &mut entity_sinks)?;
        progress.advance(batch.num_rows() as u64);
    }
    let entity_parts = entity_sinks
        .into_iter()
        .map(Sink::finish)
        .collect::<Result<Vec<_>, _>>()?;

    let mut source_sinks = (0..partitions)
        .map(|p| Sink::new(&source_schema, dir, &file_name("source", p)))
        .collect::<Result<Vec<_>, _>>()?;
    let projection = source.projection();
    let mut read = 0u64;
    for table in &source.files {
        for batch in table.batches(Some(&projection))? {
            let batch = batch?;
            let prepared = source.prepare(&batch, &source_schema, table.path())?;
            read += batch.num_rows() as u64;
            scatter(prepared, &mut source_sinks)?;
            progress.advance(batch.num_rows() as u64);
        }
    }
    let source_parts = source_sinks
        .into_iter()
        .map(Sink::finish)
        .collect::<Result<Vec<_>, _>>()?;

    progress.stage(
        &format!("{name}: joining {partitions} partition(s)"),
        Some(partitions as u64),
    );
    let output_fields: Vec<Field> = source_schema.fields()[asof::SOURCE_FEATURES..]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let output_schema = asof::output_schema(&output_fields);
    let ttl = view.view.ttl_seconds.map(|s| s.saturating_mul(1_000_000_000));
    let mut joined = Vec::with_capacity(partitions);
    let mut matched = 0u64;
    for (p, (entities, rows)) in entity_parts.into_iter().zip(source_parts).enumerate() {
        let (batches, found) = asof::join_partition(&entities.load()?, &rows.load()?, ttl, &output_schema, chunk_rows)?;
        entities.discard();
        rows.discard();
        matched += found;
        let mut sink = Sink::new(&output_schema, dir, &file_name("joined", p))?;
        for batch in batches {
            sink.push(batch)?;
        }
        joined.push(sink.finish()?);
    }
    Ok((joined, read, matched))
}

/// Sends each row of a prepared batch (key in column 0) to its key's partition.
fn scatter(batch: RecordBatch, sinks: &mut [Sink]) -> Result<(), FeatureError> {
    if sinks.len() == 1 {
        return sinks[0].push(batch);
    }
    let keys = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::BinaryArray>()
        .expect("key column");
    let mut indices: Vec<Vec<u32>> = vec![Vec::new(); sinks.len()];
    for i in 0..batch.num_rows() {
        let p = if keys.is_null(i) {
            0
        } else {
            keys::partition_of(keys.value(i), sinks.len())
        };
        indices[p].push(i as u32);
    }
    for (p, rows) in indices.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let rows = UInt32Array::from(rows);
        let part = arrow_select::take::take_record_batch(&batch, &rows)
            .map_err(|e| FeatureError::io("partitioning rows", "(memory)", e))?;
        sinks[p].push(part)?;
    }
    Ok(())
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
