//! Data validation with expectation suites in Great Expectations' JSON format: twenty expectation types with GX's
//! `mostly` semantics and result shape, all evaluated in one pass over Arrow record batches.

pub mod cells;
pub mod distinct;
pub mod error;
pub mod evaluate;
pub mod expectation;
pub mod html;
pub mod result;
pub mod suite;

pub use error::SuiteError;
pub use evaluate::Validator;
pub use result::ValidationResult;
pub use suite::ExpectationSuite;
