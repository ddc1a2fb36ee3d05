//! The SQLite reads on the hot paths of the web UI and the client (run search and loading runs), on
//! connections of their own.
//!
//! sqlx runs each SQLite connection on a worker thread and passes every result row over a channel, waking
//! the async side for each: a page of 100 runs is about a thousand rows and as many thread hand-offs. Here
//! a statement runs on a blocking thread with a connection taken from a small idle list, and its rows come
//! back decoded in one answer.

use super::rows::Columns;
use super::{SqlStore, built_query, to_positional};
use crate::error::{StoreError, StoreResult};
use crate::search::{SqlBuilder, SqlValue};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use std::sync::{Arc, Mutex};

/// Connections kept open between reads.
const MAX_IDLE: usize = 8;

/// Opens reader connections on demand and keeps a few idle.
pub(super) struct SqliteReader {
    path: String,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl SqliteReader {
    pub(super) fn new(path: &str) -> Self {
        SqliteReader {
            path: path.to_string(),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `work` on a reader connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (path, idle) = (self.path.clone(), self.idle.clone());
        tokio::task::spawn_blocking(move || {
            let taken = idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
            let connection = match taken {
                Some(connection) => connection,
                None => open_reader(&path)?,
            };
            let result = work(&connection);
            let mut idle = idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(connection);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Embedded(format!("a database read failed unexpectedly: {error}")))?
    }
}

fn open_reader(path: &str) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| reader_error(&error))?;
    connection
        .execute_batch(super::SQLITE_READ_SETTINGS)
        .map_err(|error| reader_error(&error))?;
    Ok(connection)
}

fn reader_error(error: &rusqlite::Error) -> StoreError {
    StoreError::Embedded(format!("the SQLite database refused a read: {error}"))
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> StoreResult<String> {
        self.get(column).map_err(|error| reader_error(&error))
    }
    fn optional_text(&self, column: &str) -> StoreResult<Option<String>> {
        self.get(column).map_err(|error| reader_error(&error))
    }
    fn integer(&self, column: &str) -> StoreResult<i64> {
        self.get(column).map_err(|error| reader_error(&error))
    }
    fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>> {
        self.get(column).map_err(|error| reader_error(&error))
    }
    fn real(&self, column: &str) -> StoreResult<f64> {
        self.get(column).map_err(|error| reader_error(&error))
    }
}

impl SqlStore {
    /// Runs a built query and decodes each row: on SQLite through a reader connection (one hand-off per
    /// statement), on PostgreSQL through the pool.
    pub(super) async fn decoded_rows<T: Send + 'static>(
        &self,
        builder: &SqlBuilder,
        decode: fn(&dyn Columns) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let Some(reader) = &self.sqlite_reader else {
            let rows = built_query(builder, self.dialect).fetch_all(&self.pool).await?;
            return rows.iter().map(|row| decode(row)).collect();
        };
        let (sql, order) = to_positional(&builder.sql);
        let values: Vec<Value> = order
            .iter()
            .map(|number| match &builder.values[number - 1] {
                SqlValue::Text(text) => Value::Text(text.clone()),
                SqlValue::Integer(integer) => Value::Integer(*integer),
                SqlValue::Real(real) => Value::Real(*real),
                SqlValue::NullText => Value::Null,
            })
            .collect();
        reader
            .read(move |connection| {
                let mut statement = connection.prepare_cached(&sql).map_err(|error| reader_error(&error))?;
                let mut rows = statement
                    .query(rusqlite::params_from_iter(values))
                    .map_err(|error| reader_error(&error))?;
                let mut decoded = Vec::new();
                while let Some(row) = rows.next().map_err(|error| reader_error(&error))? {
                    decoded.push(decode(row)?);
                }
                Ok(decoded)
            })
            .await
    }
}
