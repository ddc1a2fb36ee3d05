//! Model backends for serving and batch inference. This first part holds the native tree evaluators:
//! XGBoost models (JSON and UBJSON files) evaluated in Rust with XGBoost's own single-precision arithmetic.

pub mod ubjson;
pub mod xgboost;
