//! The audit trail's writer: requests hand their entry to a channel and go on; a task writes what arrived in
//! one transaction every 100 ms. A full channel makes requests wait rather than lose entries.

use loopline_metadata_store::{AccessStore, AuditEntry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const QUEUE: usize = 65_536;
const BATCH: usize = 4_096;

/// Where audit entries go.
#[derive(Clone)]
pub struct AuditSink {
    sender: mpsc::Sender<AuditEntry>,
}

impl AuditSink {
    /// Starts the writer task.
    pub fn start(store: Arc<dyn AccessStore>) -> AuditSink {
        let (sender, mut receiver) = mpsc::channel::<AuditEntry>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                if receiver.recv_many(&mut batch, BATCH).await == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                while batch.len() < BATCH {
                    match receiver.try_recv() {
                        Ok(entry) => batch.push(entry),
                        Err(_) => break,
                    }
                }
                if let Err(error) = store.append_audit(&batch).await {
                    tracing::error!(%error, entries = batch.len(), "audit entries could not be written");
                }
                batch.clear();
            }
        });
        AuditSink { sender }
    }

    /// Records one entry.
    pub async fn record(&self, entry: AuditEntry) {
        if self.sender.send(entry).await.is_err() {
            tracing::error!("the audit writer has stopped; an entry was not recorded");
        }
    }
}
