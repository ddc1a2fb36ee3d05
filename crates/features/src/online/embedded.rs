//! The embedded online store: one SQLite file in WAL mode, with a connection for writes and one for reads so
//! that lookups never wait behind a materialisation. The file is made by the first write: a server that never
//! uses the feature store leaves nothing in its data directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Keyed, OnlineError, OnlineRow, OnlineStore};

/// Rows written per transaction.
const ROWS_PER_TRANSACTION: usize = 20_000;

/// The embedded store.
pub struct EmbeddedOnlineStore {
    path: PathBuf,
    opened: std::sync::OnceLock<Connections>,
    /// Held while the file is made, so two first writes do not race.
    opening: Mutex<()>,
}

struct Connections {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

impl EmbeddedOnlineStore {
    /// The store at `path`: opened now if the file exists (and checked), made by the first write otherwise.
    pub fn open(path: &Path) -> Result<EmbeddedOnlineStore, OnlineError> {
        let store = EmbeddedOnlineStore {
            path: path.to_path_buf(),
            opened: std::sync::OnceLock::new(),
            opening: Mutex::new(()),
        };
        if path.exists() {
            store.connections(true)?;
        }
        Ok(store)
    }

    /// The connections, made (with the file, when `create`) on first use; `None` when there is no file yet.
    fn connections(&self, create: bool) -> Result<Option<&Connections>, OnlineError> {
        if let Some(opened) = self.opened.get() {
            return Ok(Some(opened));
        }
        let _guard = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(opened) = self.opened.get() {
            return Ok(Some(opened));
        }
        if !create && !self.path.exists() {
            return Ok(None);
        }
        let connections = Self::connect(&self.path)?;
        Ok(Some(self.opened.get_or_init(|| connections)))
    }

    fn connect(path: &Path) -> Result<Connections, OnlineError> {
        let failed = |e: rusqlite::Error| OnlineError(format!("{}: {e}", path.display()));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| OnlineError(format!("{}: {e}", parent.display())))?;
        }
        let writer = Connection::open(path).map_err(failed)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA busy_timeout = 10000;
                 CREATE TABLE IF NOT EXISTS online_rows (
                     project TEXT NOT NULL, view TEXT NOT NULL, entity BLOB NOT NULL,
                     ordering TEXT NOT NULL, row BLOB NOT NULL,
                     PRIMARY KEY (project, view, entity)) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS watermarks (
                     project TEXT NOT NULL, view TEXT NOT NULL, end_time INTEGER NOT NULL,
                     PRIMARY KEY (project, view));",
            )
            .map_err(failed)?;
        let reader = Connection::open(path).map_err(failed)?;
        reader.execute_batch("PRAGMA busy_timeout = 10000;").map_err(failed)?;
        Ok(Connections {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    fn failed(&self, error: impl std::fmt::Display) -> OnlineError {
        OnlineError(format!("{}: {error}", self.path.display()))
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, OnlineError> {
        let writer = self.connections(true)?.expect("made").writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = writer.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(|e| self.failed(e))?
        .map_err(|e| self.failed(e))
    }
}

#[async_trait]
impl OnlineStore for EmbeddedOnlineStore {
    async fn write(&self, project: &str, view: &str, rows: Keyed) -> Result<(), OnlineError> {
        let (project, view) = (project.to_string(), view.to_string());
        self.with_writer(move |connection| {
            for chunk in rows.chunks(ROWS_PER_TRANSACTION) {
                let transaction = connection.transaction()?;
                {
                    let mut statement = transaction.prepare_cached(
                        "INSERT INTO online_rows (project, view, entity, ordering, row) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (project, view, entity) DO UPDATE
                         SET ordering = excluded.ordering, row = excluded.row
                         WHERE excluded.ordering >= online_rows.ordering",
                    )?;
                    for (key, row) in chunk {
                        statement.execute(params![project, view, key, row.order_text(), row.encode()])?;
                    }
                }
                transaction.commit()?;
            }
            Ok(())
        })
        .await
    }

    async fn read(
        &self,
        project: &str,
        wanted: &[(String, Vec<Vec<u8>>)],
    ) -> Result<Vec<Vec<Option<OnlineRow>>>, OnlineError> {
        let Some(connections) = self.connections(false)? else {
            return Ok(wanted.iter().map(|(_, keys)| vec![None; keys.len()]).collect());
        };
        // Point lookups on the primary key take microseconds: they run here rather than on another thread.
        let connection = connections.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let mut statement = connection
            .prepare_cached("SELECT row FROM online_rows WHERE project = ?1 AND view = ?2 AND entity = ?3")
            .map_err(|e| self.failed(e))?;
        let mut out = Vec::with_capacity(wanted.len());
        for (view, keys) in wanted {
            let mut rows = Vec::with_capacity(keys.len());
            for key in keys {
                let bytes: Option<Vec<u8>> = statement
                    .query_row(params![project, view, key], |row| row.get(0))
                    .optional()
                    .map_err(|e| self.failed(e))?;
                rows.push(bytes.and_then(|b| OnlineRow::decode(&b)));
            }
            out.push(rows);
        }
        Ok(out)
    }

    async fn watermark(&self, project: &str, view: &str) -> Result<Option<i64>, OnlineError> {
        let Some(connections) = self.connections(false)? else {
            return Ok(None);
        };
        let connection = connections.reader.lock().unwrap_or_else(PoisonError::into_inner);
        connection
            .query_row(
                "SELECT end_time FROM watermarks WHERE project = ?1 AND view = ?2",
                params![project, view],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.failed(e))
    }

    async fn set_watermark(&self, project: &str, view: &str, end: i64) -> Result<(), OnlineError> {
        let (project, view) = (project.to_string(), view.to_string());
        self.with_writer(move |connection| {
            connection.execute(
                "INSERT INTO watermarks (project, view, end_time) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project, view) DO UPDATE SET end_time = excluded.end_time",
                params![project, view, end],
            )?;
            Ok(())
        })
        .await
    }

    async fn drop_view(&self, project: &str, view: &str) -> Result<(), OnlineError> {
        let (project, view) = (project.to_string(), view.to_string());
        self.with_writer(move |connection| {
            let transaction = connection.transaction()?;
            transaction.execute(
                "DELETE FROM online_rows WHERE project = ?1 AND view = ?2",
                params![project, view],
            )?;
            transaction.execute(
                "DELETE FROM watermarks WHERE project = ?1 AND view = ?2",
                params![project, view],
            )?;
            transaction.commit()
        })
        .await
    }

    fn describe(&self) -> String {
        format!("embedded online store {}", self.path.display())
    }
}
