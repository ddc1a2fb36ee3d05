//! Foundation types shared by every Loopline crate: the closed error vocabulary, identifiers, clocks,
//! pagination tokens and the proto3-JSON number encodings that MLflow clients expect.

pub mod error_code;
pub mod html;
pub mod ids;
pub mod media_type;
pub mod net;
pub mod page_token;
pub mod proto_json;
pub mod python_json;
pub mod redact;
pub mod threads;
pub mod time;

pub use error_code::{ErrorCode, HasErrorCode};
