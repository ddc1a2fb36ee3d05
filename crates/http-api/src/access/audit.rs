//! The audit trail's writer: requests hand their entry to a channel and go on; a task writes what arrived in
//! one transaction every 250 ms. A full channel makes requests wait rather than lose entries. Reading the
//! trail first flushes what is queued, so an admin sees every request answered before the query.

use loopline_metadata_store::{AccessStore, AuditEntry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const QUEUE: usize = 65_536;
const BATCH: usize = 4_096;

enum Message {
    Entry(Box<AuditEntry>),
    Flush(oneshot::Sender<()>),
}

/// Where audit entries go.
#[derive(Clone)]
pub struct AuditSink {
    sender: mpsc::Sender<Message>,
}

impl AuditSink {
    /// Starts the writer task.
    pub fn start(store: Arc<dyn AccessStore>) -> AuditSink {
        let (sender, mut receiver) = mpsc::channel::<Message>(QUEUE);
        tokio::spawn(async move {
            let mut messages = Vec::with_capacity(BATCH);
            loop {
                if receiver.recv_many(&mut messages, BATCH).await == 0 {
                    break;
                }
                let flush_asked = messages.iter().any(|message| matches!(message, Message::Flush(_)));
                // A full batch is written at once: a busy server's trail never falls behind its requests.
                if !flush_asked && messages.len() < BATCH {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                while messages.len() < BATCH {
                    match receiver.try_recv() {
                        Ok(message) => messages.push(message),
                        Err(_) => break,
                    }
                }
                let mut entries = Vec::with_capacity(messages.len());
                let mut waiting = Vec::new();
                for message in messages.drain(..) {
                    match message {
                        Message::Entry(entry) => entries.push(*entry),
                        Message::Flush(done) => waiting.push(done),
                    }
                }
                let count = entries.len();
                if let Err(error) = store.append_audit(entries).await {
                    tracing::error!(%error, entries = count, "audit entries could not be written");
                }
                for done in waiting {
                    let _ = done.send(());
                }
            }
        });
        AuditSink { sender }
    }

    /// Records one entry.
    pub async fn record(&self, entry: AuditEntry) {
        if self.sender.send(Message::Entry(Box::new(entry))).await.is_err() {
            tracing::error!("the audit writer has stopped; an entry was not recorded");
        }
    }

    /// Waits until every entry recorded before the call is written.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}
