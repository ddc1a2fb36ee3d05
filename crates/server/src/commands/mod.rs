//! Command-line jobs on data files: `profile`, `drift` (and `validate`). Each returns its exit code: 0 when all
//! is well, 1 when drift was found or an expectation failed, 2 when the input or the usage is wrong.

pub mod credentials;
pub mod data;
pub mod data_remote;
pub mod documents;
pub mod drift;
pub mod embed;
pub mod features;
pub mod features_lineage;
pub mod features_remote;
pub mod gateway;
pub mod lineage;
pub mod loop_hooks;
pub mod monitor;
pub mod pipeline;
pub mod pipeline_remote;
pub mod predict;
pub mod predictions;
pub mod profile;
pub mod progress;
pub mod quickstart;
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

/// `mlflow models serve` / `predict` flags about the Python environment, accepted so their command lines work
/// unchanged. Loopline builds no environment: native models run in-process and any other model in the Python
/// worker's interpreter (`LOOPLINE_PYTHON`, else the project venv's, else `python3`), so anything but `local` is
/// answered with a note saying so.
#[derive(Debug, clap::Args)]
pub struct PythonEnvArgs {
    /// Accepted for `mlflow models` compatibility: `local`, `virtualenv`, `uv` or `conda`; Loopline always uses the
    /// local environment.
    #[arg(long, value_parser = ["local", "virtualenv", "uv", "conda"])]
    pub env_manager: Option<String>,
    /// Accepted for `mlflow models` compatibility (the same as `--env-manager local`).
    #[arg(long)]
    pub no_conda: bool,
    /// Accepted for `mlflow models` compatibility; nothing is installed.
    #[arg(long)]
    pub install_mlflow: bool,
}

impl PythonEnvArgs {
    /// What the flags asked for that Loopline does differently, for a note on standard error.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(manager) = self.env_manager.as_deref().filter(|m| *m != "local" && !self.no_conda) {
            notes.push(format!(
                "--env-manager {manager}: Loopline creates no environment; native models (XGBoost, LightGBM, ONNX) \
                 run in-process and other models in the Python of LOOPLINE_PYTHON, which needs the model's \
                 libraries"
            ));
        }
        if self.install_mlflow {
            notes
                .push("--install-mlflow: nothing is installed; the Python worker uses the mlflow it finds".to_string());
        }
        notes
    }

    /// Prints the notes.
    pub fn print_notes(&self) {
        for note in self.notes() {
            eprintln!("note: {note}");
        }
    }
}
