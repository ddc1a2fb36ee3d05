//! Who may do what. Users (Argon2id passwords, lockout), service accounts and API tokens; roles with grants
//! in MLflow's levels plus DENY on each kind of resource; the creator's MANAGE; caches that keep password
//! hashing and store reads off the request path. The HTTP side (which route needs what, the MLflow auth API)
//! is in the wire crate.

pub mod admin;
pub mod checked;
pub mod level;
pub mod oidc;
pub mod password;
pub mod principal;
pub mod remembered;
pub mod service;
pub mod token;

pub use checked::Checked;
pub use level::{Grant, Level};
pub use principal::{Action, Principal, Scope};
pub use service::{Access, AccessSettings, AuthError, Credentials};
