//! Vector search for Loopline: an HNSW graph over float32 vectors with filters checked inside the walk,
//! payload indexes and a planner that switches to exact search when a filter is selective, int8 scalar
//! quantisation with rescoring, and exact search for checking. A pure library: storage and the Qdrant REST
//! API live elsewhere.

pub mod distance;
pub mod filter;
mod flat;
pub mod hnsw;
pub mod ops;
pub mod payload_index;
pub mod point_id;
pub mod quantize;
pub mod search;
pub mod segment;
pub mod storage;
pub mod vectors;
mod visited;

pub use distance::Distance;
pub use filter::{Filter, FilterError};
pub use hnsw::HnswParams;
pub use ops::{Operation, OperationError};
pub use payload_index::FieldType;
pub use point_id::PointId;
pub use search::{Hit, Plan, Query, Rescore};
pub use segment::{Point, Record, Segment, SegmentError, Staged, VectorParams};
pub use storage::catalog::{Collection, VectorStore};
pub use storage::{StorageError, StoredCollection};
