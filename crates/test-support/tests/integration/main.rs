//! Integration tests: the real server in-process on port 0, spoken to over HTTP.

mod concurrency;
mod errors;
mod security;
mod wire_format;
