//! The online store: the latest row of each entity for each view, read in one exchange for all the views of a
//! request. Two implementations pass one conformance suite (`tests/online_store.rs`): an embedded SQLite file
//! under the data directory, and Redis for replicas.
//!
//! Every write keeps the newer row: a row replaces the stored one only when its event time (then created
//! time) is not older. So re-running a materialisation, or resuming one that crashed, writes no duplicates and
//! never moves a value back in time. Rows are replaced one by one, so readers keep the last committed values
//! of a view while it materialises.

mod embedded;
mod redis_store;
pub mod value;

use async_trait::async_trait;

pub use embedded::EmbeddedOnlineStore;
pub use redis_store::RedisOnlineStore;
pub use value::{FeatureValue, OnlineRow};

/// A failure of the store itself (unreachable, full disk); the message names the store and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("online store: {0}")]
pub struct OnlineError(pub String);

/// Rows to write: encoded entity key and its row.
pub type Keyed = Vec<(Vec<u8>, OnlineRow)>;

/// Where online features live.
#[async_trait]
pub trait OnlineStore: Send + Sync {
    /// Writes rows of a view; each replaces the stored row of its key only when it is not older.
    async fn write(&self, project: &str, view: &str, rows: Keyed) -> Result<(), OnlineError>;
    /// Reads, in one exchange, each view's rows for its keys (`None` where there is none), in order.
    async fn read(
        &self,
        project: &str,
        wanted: &[(String, Vec<Vec<u8>>)],
    ) -> Result<Vec<Vec<Option<OnlineRow>>>, OnlineError>;
    /// The end of the last materialisation of a view (nanoseconds since the epoch).
    async fn watermark(&self, project: &str, view: &str) -> Result<Option<i64>, OnlineError>;
    /// Records the end of a materialisation of a view.
    async fn set_watermark(&self, project: &str, view: &str, end: i64) -> Result<(), OnlineError>;
    /// Removes every row and the watermark of a view.
    async fn drop_view(&self, project: &str, view: &str) -> Result<(), OnlineError>;
    /// How messages name the store.
    fn describe(&self) -> String;
}
