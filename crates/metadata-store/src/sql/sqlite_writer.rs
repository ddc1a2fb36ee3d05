//! The SQLite writer of the hot tracking writes (log_batch, and log_metric, log_param and set_tag through it).
//!
//! One thread owns one connection and its prepared statements. A request hands its whole write over in
//! one message and waits for the answer, instead of sending each statement to a sqlx worker thread and
//! assembling SQL text for every batch. Writes that arrive while one is running are committed together:
//! each runs inside its own savepoint, so one request's refusal undoes only its own rows, and every request
//! of the group is answered only after the common commit (acknowledged means durable, as before).
//!
//! The thread takes the store's write lock for each group, so it queues with the writes that still go
//! through the sqlx pool instead of meeting them as "database is locked".
//!
//! Checkpoints (copying the write-ahead log back into the database file) are mostly made by a second thread
//! on its own connection at idle priority, off the requests' path: a passive one each second while writes
//! go on, and once they pause, one that empties the log, so reads go back to the mapped file instead of
//! looking pages up in the log (a search right after a burst of writes took three times as long). The
//! writer wakes that thread only on its first write after a pause; between, it just counts. The writer
//! still checkpoints itself once the log passes 16 MB: only a checkpoint that no write overlaps lets the
//! next write start the log over, so under writes that never pause the log would otherwise grow without end
//! (an outside test saw 1.2 GB in a minute). By then the passive copies have done most of its work, unless
//! the machine was too busy to let the checkpoint thread run.
//!
//! Writes nobody waits for (the LLM gateway's traces, a thousand a second, and their retention sweep) go to
//! a second thread that runs
//! at the system's idle priority and shares the connection: it writes when no other thread of the machine
//! wants the processor. At the writer's normal priority those traces took a fifth of a processor, and on
//! two cores every thread that woke behind one (the gateway's own, its callers', its providers') waited for
//! the writer's time slice: the gateway's added p99 was 1.4-1.8 ms at 1,000 calls a second, and 0.2-1.0 ms
//! with the trace work at idle priority (docs/gateway.md). Lowering the thread's nice value did not
//! help: the scheduler still lets the running thread finish its slice. A background group holds the
//! connection for at most one write, so a request's write waits behind at most one of them.

use crate::error::{StoreError, StoreResult};
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::Mutex as ConnectionLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, oneshot};

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 64;
/// Most background writes committed in one transaction: one, so the connection is held briefly by a
/// thread that may wait long for the processor.
const MAX_BACKGROUND_GROUP: usize = 1;

/// How often the log is copied back while writes go on (at the fastest batches, about 25 MB of log).
const PASSIVE_EVERY: Duration = Duration::from_secs(1);

/// Quiet time after which the log is emptied.
const IDLE_BEFORE_TRUNCATE: Duration = Duration::from_millis(300);

/// What the writer tells the checkpoint thread.
struct WriteActivity {
    /// Commits made, ever.
    commits: AtomicU64,
    /// Whether the checkpoint thread is watching (it sleeps between bursts of writes).
    watching: AtomicBool,
}

impl WriteActivity {
    /// Counts a commit; wakes the checkpoint thread if it sleeps. Only the writer holds `wake`, so the
    /// checkpoint thread ends when the writer does.
    fn committed(&self, wake: &SyncSender<()>) {
        self.commits.fetch_add(1, Ordering::AcqRel);
        if !self.watching.swap(true, Ordering::AcqRel) {
            let _ = wake.try_send(());
        }
    }
}

type Work = Box<dyn FnOnce(&Connection) -> StoreResult<()> + Send>;

enum Message {
    Write(Work, oneshot::Sender<StoreResult<()>>),
    Stop(oneshot::Sender<()>),
}

/// Hands writes to the writer thread, or to the background writer.
pub(super) struct SqliteWriter {
    messages: Sender<Message>,
    background: Sender<Message>,
}

/// Which thread commits a write.
#[derive(Clone, Copy)]
pub(super) enum Lane {
    /// The writer, at normal priority (what [`SqliteWriter::write`] uses).
    Writer,
    /// The background writer, at idle priority: for writes nobody waits for.
    Background,
}

/// What a writer thread works with: the connection (shared by the writer and the background writer), the
/// store's write lock, and the checkpoint thread's activity counter and wake-up.
struct Shared {
    connection: Arc<ConnectionLock<Connection>>,
    write_lock: Arc<Mutex<()>>,
    activity: Arc<WriteActivity>,
    wake: SyncSender<()>,
}

impl SqliteWriter {
    /// Opens the writer's own connection to `path` and starts its thread.
    pub(super) fn start(path: &str, write_lock: Arc<Mutex<()>>) -> StoreResult<Self> {
        let connection = Connection::open(path).map_err(|error| writer_error(&error))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000; \
                 PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 4000;",
            )
            .map_err(|error| writer_error(&error))?;
        let checkpoints = Connection::open(path).map_err(|error| writer_error(&error))?;
        let (wake, wakes) = sync_channel(1);
        let activity = Arc::new(WriteActivity {
            commits: AtomicU64::new(0),
            watching: AtomicBool::new(false),
        });
        // A log left by the last run is emptied once the first pause is seen, writes or not.
        activity.committed(&wake);
        let watched = activity.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_string())
            .spawn(move || {
                // Off every request's path: it copies what the writers committed when nothing else runs.
                if let Err(error) = loopline_core::threads::lower_to_idle_priority() {
                    tracing::warn!(%error, "the SQLite checkpoint thread keeps the normal priority");
                }
                checkpoint_when_needed(&checkpoints, &wakes, &watched);
            })
            .map_err(|error| StoreError::Embedded(format!("cannot start the SQLite checkpoint thread: {error}")))?;
        let connection = Arc::new(ConnectionLock::new(connection));
        let (messages, inbox) = channel();
        let shared = Shared {
            connection: connection.clone(),
            write_lock: write_lock.clone(),
            activity: activity.clone(),
            wake: wake.clone(),
        };
        std::thread::Builder::new()
            .name("sqlite-writer".to_string())
            .spawn(move || serve(shared, &inbox, MAX_GROUP))
            .map_err(|error| StoreError::Embedded(format!("cannot start the SQLite writer thread: {error}")))?;
        let (background, background_inbox) = channel();
        let shared = Shared {
            connection,
            write_lock,
            activity,
            wake,
        };
        std::thread::Builder::new()
            .name("sqlite-background".to_string())
            .spawn(move || {
                if let Err(error) = loopline_core::threads::lower_to_idle_priority() {
                    tracing::warn!(%error, "the SQLite background writer (the LLM gateway's traces) keeps the normal priority");
                }
                serve(shared, &background_inbox, MAX_BACKGROUND_GROUP);
            })
            .map_err(|error| {
                StoreError::Embedded(format!("cannot start the SQLite background writer thread: {error}"))
            })?;
        Ok(SqliteWriter { messages, background })
    }

    /// Runs `work` in the writer's transaction and answers once it is committed.
    pub(super) async fn write(
        &self,
        work: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static,
    ) -> StoreResult<()> {
        self.write_on(Lane::Writer, work).await
    }

    /// Runs `work` on the thread `lane` names and answers once it is committed.
    pub(super) async fn write_on(
        &self,
        lane: Lane,
        work: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static,
    ) -> StoreResult<()> {
        let thread = match lane {
            Lane::Writer => &self.messages,
            Lane::Background => &self.background,
        };
        Self::hand_over(thread, Box::new(work)).await
    }

    async fn hand_over(thread: &Sender<Message>, work: Work) -> StoreResult<()> {
        let (answer, answered) = oneshot::channel();
        thread.send(Message::Write(work, answer)).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// Finishes the writes already handed over and closes the connection (when the last of the two
    /// threads lets go of it).
    pub(super) async fn stop(&self) {
        for thread in [&self.background, &self.messages] {
            let (done, stopped) = oneshot::channel();
            if thread.send(Message::Stop(done)).is_ok() {
                let _ = stopped.await;
            }
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Embedded("the SQLite writer has stopped (the server is shutting down)".to_string())
}

/// What the database said, for the person reading the error.
pub(super) fn writer_error(error: &rusqlite::Error) -> StoreError {
    StoreError::Embedded(format!("the SQLite database refused a write: {error}"))
}

fn serve(shared: Shared, inbox: &Receiver<Message>, max_group: usize) {
    while let Ok(message) = inbox.recv() {
        let mut group = Vec::new();
        let mut stop = None;
        match message {
            Message::Write(work, answer) => group.push((work, answer)),
            Message::Stop(done) => stop = Some(done),
        }
        while stop.is_none() && group.len() < max_group {
            match inbox.try_recv() {
                Ok(Message::Write(work, answer)) => group.push((work, answer)),
                Ok(Message::Stop(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        if !group.is_empty() {
            // A write that panicked was caught inside; the connection is still sound.
            let connection = shared
                .connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _writer = shared.write_lock.blocking_lock();
            commit_group(&connection, group);
            shared.activity.committed(&shared.wake);
        }
        if let Some(done) = stop {
            // The background writer stops first, so the writer's is the last hold on the connection:
            // it is closed before the stop is answered.
            drop(shared);
            let _ = done.send(());
            return;
        }
    }
}

/// Runs each write in its own savepoint inside one transaction, commits, then answers each.
fn commit_group(connection: &Connection, group: Vec<(Work, oneshot::Sender<StoreResult<()>>)>) {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        for (_, answer) in group {
            let _ = answer.send(Err(writer_error(&error)));
        }
        return;
    }
    let mut outcomes = Vec::with_capacity(group.len());
    if group.len() == 1 {
        // Alone in its transaction, a write needs no savepoint (whose page copies cost a fifth of a
        // 1,000-metric batch): a refusal rolls the transaction back.
        for (work, answer) in group {
            let outcome = run_guarded(connection, work);
            if outcome.is_err() {
                let _ = connection.execute_batch("ROLLBACK");
                let _ = answer.send(outcome);
                return;
            }
            outcomes.push((outcome, answer));
        }
    } else {
        for (work, answer) in group {
            let outcome = run_in_savepoint(connection, work);
            outcomes.push((outcome, answer));
        }
    }
    if let Err(error) = connection.execute_batch("COMMIT") {
        let _ = connection.execute_batch("ROLLBACK");
        for (outcome, answer) in outcomes {
            let _ = answer.send(outcome.and(Err(writer_error(&error))));
        }
        return;
    }
    for (outcome, answer) in outcomes {
        let _ = answer.send(outcome);
    }
}

fn run_in_savepoint(connection: &Connection, work: Work) -> StoreResult<()> {
    connection
        .execute_batch("SAVEPOINT write")
        .map_err(|error| writer_error(&error))?;
    let outcome = run_guarded(connection, work);
    let closing = if outcome.is_ok() {
        "RELEASE write"
    } else {
        "ROLLBACK TO write; RELEASE write"
    };
    connection
        .execute_batch(closing)
        .map_err(|error| writer_error(&error))?;
    outcome
}

/// Runs one write, turning a panic into an error (the caller undoes its rows).
fn run_guarded(connection: &Connection, work: Work) -> StoreResult<()> {
    catch_unwind(AssertUnwindSafe(|| work(connection))).unwrap_or_else(|_| {
        Err(StoreError::Embedded(
            "a write failed unexpectedly and was undone; the server log has the details".to_string(),
        ))
    })
}

/// Sleeps until writes begin, copies the log back each second while they go on, empties it once they
/// pause, and sleeps again; returns when the writer stops.
fn checkpoint_when_needed(connection: &Connection, wakes: &Receiver<()>, activity: &WriteActivity) {
    while wakes.recv().is_ok() {
        let mut seen = activity.commits.load(Ordering::Acquire);
        let mut copied_at = Instant::now();
        loop {
            if let Err(RecvTimeoutError::Disconnected) = wakes.recv_timeout(IDLE_BEFORE_TRUNCATE) {
                return;
            }
            let commits = activity.commits.load(Ordering::Acquire);
            if commits != seen {
                seen = commits;
                if copied_at.elapsed() >= PASSIVE_EVERY {
                    checkpoint(connection, "PASSIVE");
                    copied_at = Instant::now();
                }
                continue;
            }
            // Writes have paused. Stop watching first, so a write from now on wakes this thread again;
            // one that came just before is seen in the count. Empty the log unless a reader or a writer is
            // busy (no waiting: the next pause tries again).
            activity.watching.store(false, Ordering::Release);
            if activity.commits.load(Ordering::Acquire) != seen || !checkpoint(connection, "TRUNCATE") {
                activity.watching.store(true, Ordering::Release);
                continue;
            }
            break;
        }
    }
}

/// One checkpoint that never waits for a lock; whether it finished.
fn checkpoint(connection: &Connection, mode: &str) -> bool {
    let outcome = connection.execute_batch("PRAGMA busy_timeout = 0").and_then(|()| {
        connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            row.get::<_, i64>(0)
        })
    });
    match outcome {
        Ok(busy) => busy == 0,
        Err(error) => {
            tracing::warn!(%error, mode, "a checkpoint of the SQLite write-ahead log failed; the next one will try again");
            false
        }
    }
}
