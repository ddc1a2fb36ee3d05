//! The SQL implementation of every store trait, over sqlx's `Any` driver so one body of SQL serves SQLite
//! and PostgreSQL. SQLite runs in WAL mode and all its writes go through one writer lock, so concurrent
//! clients queue instead of failing with "database is locked".

mod access;
mod assessment_rows;
mod datasets;
mod deployments;
mod eval_datasets;
mod experiments;
mod features;
mod gates;
mod gateway;
mod issues;
mod logged_models;
mod metric_sampling;
mod migrations;
mod monitors;
mod pipelines;
mod registry;
mod registry_search;
mod rows;
mod run_search;
mod runs;
mod scorers;
mod span_columns;
mod sqlite_batch;
mod sqlite_reader;
mod sqlite_spans;
mod sqlite_writer;
pub use span_columns::mlflow_span_dict;
mod trace_filters;
mod trace_metrics;
mod trace_spans;
mod traces;
mod webhooks;

pub use migrations::LATEST_SCHEMA_VERSION;

use crate::error::{StoreError, StoreResult};
use crate::search::{FilterSyntaxError, SqlBuilder, SqlValue};
use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

/// The most heap SQLite keeps in the whole process, page caches included (2 MiB). The bundled SQLite is built
/// with SQLITE_ENABLE_MEMORY_MANAGEMENT, so every connection's pages sit in one shared cache whose bound is
/// the sum of the connections' `cache_size`: with the read settings below that is hundreds of megabytes, and
/// the writer's pages were never let go (measured: +0.5 MiB a minute under a thousand traces a second, all
/// of it releasable). Past this limit SQLite recycles the least recently used clean pages instead. Reads
/// come from the mapped file and the system's page cache, so a small cache costs little: raw `log-metric`
/// calls ran at the same rate with 2 and 16 MiB (35-42k a second either way), while glibc, which SQLite
/// allocates from, held ~1.4 times SQLite's high mark (a gateway soak: 10.4 MiB at 16 MiB's limit and
/// rising, 3.0 MiB flat at 2 MiB; docs/benchmarks.md).
const SQLITE_SOFT_HEAP_LIMIT: i64 = 2 << 20;

/// How every SQLite connection that reads is set up, the pool's and the reader's alike (see `connect`).
const SQLITE_READ_SETTINGS: &str = "PRAGMA busy_timeout = 30000; PRAGMA case_sensitive_like = ON; \
     PRAGMA mmap_size = 4294967296; PRAGMA cache_size = -32768;";

/// Which SQL database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Metadata store on SQLite or PostgreSQL.
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// Serialises SQLite writers; PostgreSQL handles concurrent writers itself.
    write_lock: Arc<Mutex<()>>,
    /// On SQLite, the thread that owns the connection the hot tracking writes go through.
    sqlite_writer: Option<sqlite_writer::SqliteWriter>,
    /// On SQLite, the connections the run search and run loading read through.
    sqlite_reader: Option<sqlite_reader::SqliteReader>,
    /// Prefix of default artifact locations, e.g. `mlflow-artifacts:`.
    default_artifact_root: String,
}

/// How a backend store URI is spelled by the user, turned into a sqlx URL.
fn database_url(backend_store_uri: &str) -> StoreResult<(String, Dialect)> {
    if let Some(rest) = backend_store_uri.strip_prefix("sqlite:") {
        // MLflow spells files `sqlite:///relative.db` and `sqlite:////absolute.db`.
        let path = rest
            .strip_prefix("///")
            .or_else(|| rest.strip_prefix("//"))
            .unwrap_or(rest);
        let path = path.split('?').next().unwrap_or_default().to_string();
        if path.is_empty() || path == ":memory:" {
            return Err(StoreError::UnsupportedUri(backend_store_uri.to_string()));
        }
        if let Some(parent) = Path::new(&path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::InvalidParameter(format!(
                    "cannot create directory '{}' for the database: {error}",
                    parent.display()
                ))
            })?;
        }
        return Ok((format!("sqlite://{path}?mode=rwc"), Dialect::Sqlite));
    }
    if backend_store_uri.starts_with("postgresql://") || backend_store_uri.starts_with("postgres://") {
        return Ok((backend_store_uri.to_string(), Dialect::Postgres));
    }
    Err(StoreError::UnsupportedUri(backend_store_uri.to_string()))
}

impl SqlStore {
    /// Connects, migrates, and ensures the Default experiment exists.
    ///
    /// `default_artifact_root` prefixes the artifact location of experiments created without one.
    pub async fn connect(backend_store_uri: &str, default_artifact_root: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = database_url(backend_store_uri)?;
        let max_connections = match dialect {
            Dialect::Sqlite => 8,
            Dialect::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .after_connect(move |connection, _metadata| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL keeps readers off the writer's back; NORMAL sync keeps every committed
                        // transaction across a process crash (kill -9), losing at most the last ones on
                        // power loss. LIKE is case-sensitive as in MLflow. Reads map the file: the pool's
                        // connections share the system's page cache instead of each reading pages into a
                        // small cache of its own, one system call per page.
                        connection
                            .execute(sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"))
                            .await?;
                        connection.execute(sqlx::raw_sql(SQLITE_READ_SETTINGS)).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let mut store = SqlStore {
            pool,
            dialect,
            write_lock: Arc::new(Mutex::new(())),
            sqlite_writer: None,
            sqlite_reader: None,
            default_artifact_root: default_artifact_root.trim_end_matches('/').to_string(),
        };
        store.migrate().await?;
        if dialect == Dialect::Sqlite {
            sqlx::query(AssertSqlSafe(format!(
                "PRAGMA soft_heap_limit = {SQLITE_SOFT_HEAP_LIMIT}"
            )))
            .execute(&store.pool)
            .await?;
            let path = url.trim_start_matches("sqlite://").trim_end_matches("?mode=rwc");
            store.sqlite_writer = Some(sqlite_writer::SqliteWriter::start(path, store.write_lock.clone())?);
            store.sqlite_reader = Some(sqlite_reader::SqliteReader::new(path));
        }
        Ok(store)
    }

    /// Which database this store talks to.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Held for the duration of every write transaction on SQLite.
    async fn writer_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match self.dialect {
            Dialect::Sqlite => Some(self.write_lock.lock().await),
            Dialect::Postgres => None,
        }
    }

    /// Begins a transaction that writes. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so it
    /// waits (busy timeout) behind a connection whose dropped transaction is still being rolled back, instead
    /// of failing with "database is locked" when its first write finds a read snapshot it cannot upgrade.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// Closes the pool and the SQLite writer, waiting for connections to be returned and writes to finish.
    pub async fn close(&self) {
        if let Some(writer) = &self.sqlite_writer {
            writer.stop().await;
        }
        self.pool.close().await;
    }
}

/// Binds a builder's values to a query in order.
fn bind_values<'q>(mut query: Query<'q, Any, AnyArguments>, values: &[SqlValue]) -> Query<'q, Any, AnyArguments> {
    for value in values {
        query = match value {
            SqlValue::Text(text) => query.bind(text.clone()),
            SqlValue::Integer(integer) => query.bind(*integer),
            SqlValue::Real(real) => query.bind(*real),
            SqlValue::NullText => query.bind(None::<String>),
        };
    }
    query
}

/// A query whose text was assembled at run time. Every caller builds the text from fixed fragments and
/// column names in this crate; user input only ever arrives as bound values.
fn query_text<'q>(sql: String) -> Query<'q, Any, AnyArguments> {
    sqlx::query(AssertSqlSafe(sql))
}

/// A query built from a [`SqlBuilder`].
///
/// On SQLite the `$N` placeholders become anonymous `?` with the values reordered to match: SQLite
/// resolves each named parameter with a linear scan, which makes a 3,600-value batch insert quadratic.
fn built_query<'q>(builder: &SqlBuilder, dialect: Dialect) -> Query<'q, Any, AnyArguments> {
    match dialect {
        Dialect::Postgres => bind_values(query_text(builder.sql.clone()), &builder.values),
        Dialect::Sqlite => {
            let (sql, order) = to_positional(&builder.sql);
            let values: Vec<SqlValue> = order.iter().map(|number| builder.values[number - 1].clone()).collect();
            bind_values(query_text(sql), &values)
        }
    }
}

/// Rewrites `$N` placeholders (outside quoted literals) as `?`, returning the N of each in text order.
fn to_positional(sql: &str) -> (String, Vec<usize>) {
    let mut rewritten = String::with_capacity(sql.len());
    let mut order = Vec::new();
    let mut characters = sql.chars().peekable();
    let mut in_literal = false;
    while let Some(character) = characters.next() {
        if character == '\'' {
            in_literal = !in_literal;
        }
        if character == '$' && !in_literal && characters.peek().is_some_and(char::is_ascii_digit) {
            let mut number = 0usize;
            while let Some(digit) = characters.peek().and_then(|next| next.to_digit(10)) {
                number = number * 10 + digit as usize;
                characters.next();
            }
            order.push(number);
            rewritten.push('?');
            continue;
        }
        rewritten.push(character);
    }
    (rewritten, order)
}

/// How many owners the loaders of whole entities (runs, versions, logged models) look up in one statement:
/// a page may hold 50,000 runs or 200,000 versions, far past what one statement can bind.
const IDS_PER_STATEMENT: usize = 1_000;

/// How many ids (experiments, traces) one call may name: each is a bound parameter, and SQLite takes 32,766.
pub const MAX_IDS_PER_CALL: usize = 10_000;

/// Appends `(id, id, ...)` for decimal experiment ids, refusing ids that are not integers.
fn push_experiment_id_list(builder: &mut SqlBuilder, experiment_ids: &[String]) -> StoreResult<()> {
    if experiment_ids.len() > MAX_IDS_PER_CALL {
        return Err(StoreError::InvalidParameter(format!(
            "a search may name at most {MAX_IDS_PER_CALL} experiment ids, got {}",
            experiment_ids.len()
        )));
    }
    builder.push("(");
    for (index, experiment_id) in experiment_ids.iter().enumerate() {
        if index > 0 {
            builder.push(", ");
        }
        let placeholder = builder.bind(SqlValue::Integer(parse_experiment_id(experiment_id)?));
        builder.push(&placeholder);
    }
    builder.push(")");
    Ok(())
}

fn invalid_filter(error: FilterSyntaxError) -> StoreError {
    StoreError::InvalidParameter(error.to_string())
}

fn invalid_search(what: &str, reason: String) -> StoreError {
    StoreError::InvalidParameter(format!("Invalid {what}: {reason}"))
}

/// Parses a numeric id (experiments) into the stored integer, or reports it missing.
fn parse_experiment_id(experiment_id: &str) -> StoreResult<i64> {
    i64::from_str(experiment_id.trim()).map_err(|_| {
        StoreError::InvalidParameter(format!(
            "experiment id '{experiment_id}' is not a valid id: it must be a decimal integer"
        ))
    })
}

/// How many order_by terms one search may give (each becomes sort keys; SQLite refuses past 64 or so).
pub const MAX_ORDER_BY_TERMS: usize = 20;

/// Refuses searches with more order_by terms than any sort needs.
fn check_order_by_count(count: usize) -> StoreResult<()> {
    if count > MAX_ORDER_BY_TERMS {
        return Err(StoreError::InvalidParameter(format!(
            "Invalid order_by: {count} terms given, at most {MAX_ORDER_BY_TERMS} are accepted"
        )));
    }
    Ok(())
}

/// Limits the number of rows one page can ask for.
fn page_limits(page: &crate::queries::PageRequest, default: u64, maximum: u64, what: &str) -> StoreResult<(u64, u64)> {
    let max_results = if page.max_results == 0 {
        default
    } else {
        page.max_results
    };
    if max_results > maximum {
        return Err(StoreError::InvalidParameter(format!(
            "Invalid value {max_results} for parameter 'max_results' supplied: {what} supports at most {maximum} results per page"
        )));
    }
    let offset = loopline_core::page_token::decode_offset(page.page_token.as_deref())
        .map_err(|error| StoreError::InvalidParameter(error.to_string()))?;
    Ok((max_results, offset))
}

/// Turns `limit + 1` fetched rows into a page with a token when more exist.
fn into_page<T>(mut items: Vec<T>, max_results: u64, offset: u64) -> crate::entities::Page<T> {
    let has_more = items.len() as u64 > max_results;
    items.truncate(max_results as usize);
    let next_page_token = has_more.then(|| loopline_core::page_token::encode_offset(offset + max_results));
    crate::entities::Page { items, next_page_token }
}

/// True for a unique-constraint violation, on either database.
fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database_error) => database_error.is_unique_violation(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_become_positional_in_text_order() {
        let (sql, order) = to_positional("SELECT x FROM t WHERE a = $2 AND b = '$1' AND c IN ($1, $3) ORDER BY $2");
        assert_eq!(
            sql,
            "SELECT x FROM t WHERE a = ? AND b = '$1' AND c IN (?, ?) ORDER BY ?"
        );
        assert_eq!(order, vec![2, 1, 3, 2]);
    }

    #[test]
    fn mlflow_style_sqlite_uris_map_to_paths() {
        let temporary = std::env::temp_dir();
        let absolute = format!("sqlite:///{}/x.db", temporary.display());
        assert_eq!(
            database_url(&absolute).unwrap().0,
            format!("sqlite://{}/x.db?mode=rwc", temporary.display())
        );
        assert_eq!(database_url("sqlite:///x.db").unwrap().0, "sqlite://x.db?mode=rwc");
        assert_eq!(database_url("postgresql://u@h/db").unwrap().1, Dialect::Postgres);
        assert!(database_url("mysql://x").is_err());
    }
}
