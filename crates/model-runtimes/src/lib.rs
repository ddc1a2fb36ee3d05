//! Model backends for serving and batch inference. This first part holds the native tree evaluators:
//! XGBoost models (JSON and UBJSON files) in XGBoost's single-precision arithmetic and LightGBM text models in
//! double precision, both equal to the libraries' own predictions.

pub mod flavors;
pub mod lightgbm;
pub mod ubjson;
pub mod xgboost;
