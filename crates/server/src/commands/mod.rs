//! Command-line jobs on data files: `profile`, `drift` (and `validate`). Each returns its exit code: 0 when all
//! is well, 1 when drift was found or an expectation failed, 2 when the input or the usage is wrong.

pub mod drift;
pub mod predict;
pub mod predictions;
pub mod profile;
pub mod progress;
pub mod rollout;
pub mod serve;
pub mod stats;
pub mod validate;

use std::process::ExitCode;

/// Exit code: no drift, every expectation met.
pub const OK: u8 = 0;
/// Exit code: drift found or an expectation failed.
pub const FINDING: u8 = 1;
/// Exit code: unusable input or usage.
pub const INPUT_ERROR: u8 = 2;

/// Prints an input error for a person and gives exit code 2.
pub fn input_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(INPUT_ERROR)
}

/// Writes `text` to `path`, or to standard output when the path is `-`.
pub fn write_output(path: &std::path::Path, text: &str) -> Result<(), String> {
    if path.as_os_str() == "-" {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
