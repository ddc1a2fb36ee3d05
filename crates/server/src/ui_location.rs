//! Finds the MLflow web UI build the server serves: the one inside the user's installed `mlflow` package
//! (`mlflow/server/js/build`), never a copy of ours. Looked for, in order: `--mlflow-ui`, the active virtual
//! environment, the project's `.venv`, then the import path of `LOOPLINE_PYTHON` and of the active `python3`.

use loopline_http_api::ui::UiBuild;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the build sits inside an installed `mlflow` package.
const BUILD_IN_PACKAGE: &str = "server/js/build";

/// The build a path names: the build directory itself, the `mlflow` package, or a site-packages directory.
fn build_under(path: &Path) -> Option<UiBuild> {
    [
        path.to_path_buf(),
        path.join(BUILD_IN_PACKAGE),
        path.join("mlflow").join(BUILD_IN_PACKAGE),
    ]
    .iter()
    .find_map(|candidate| UiBuild::open(candidate).ok())
}

/// `lib/python3.*/site-packages` directories of a virtual environment.
fn site_packages_of(environment: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(environment.join("lib")) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .map(|entry| entry.path().join("site-packages"))
        .filter(|path| path.is_dir())
        .collect();
    found.sort();
    found
}

/// The import path of a Python interpreter (without importing anything but `sys`), or nothing within a few
/// seconds.
async fn python_import_path(interpreter: &std::ffi::OsStr) -> Vec<PathBuf> {
    let run = tokio::process::Command::new(interpreter)
        .args(["-c", "import sys; print('\\n'.join(sys.path))"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(5), run).await {
        Ok(Ok(output)) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// The UI build to serve. An explicit `--mlflow-ui` that holds no build stops the server (the operator asked
/// for it); otherwise a missing build only means `/` shows how to get one.
pub async fn find(explicit: Option<&Path>) -> anyhow::Result<Option<UiBuild>> {
    if let Some(path) = explicit {
        if path.as_os_str() == "none" {
            tracing::info!("the MLflow web UI is off (--mlflow-ui none)");
            return Ok(None);
        }
        // The path itself, or a virtual environment holding the package.
        let found = build_under(path).or_else(|| site_packages_of(path).iter().find_map(|site| build_under(site)));
        return found.map(Some).ok_or_else(|| {
            anyhow::anyhow!(
                "--mlflow-ui {}: no MLflow UI build there (looked for index.html and static/ in it, in {BUILD_IN_PACKAGE}, \
                 in mlflow/{BUILD_IN_PACKAGE} and in a virtual environment's lib/python3.*/site-packages); point it at \
                 an installed mlflow package, its site-packages or its virtual environment",
                path.display()
            )
        });
    }
    let mut candidates = Vec::new();
    if let Some(environment) = std::env::var_os("VIRTUAL_ENV") {
        candidates.extend(site_packages_of(Path::new(&environment)));
    }
    candidates.extend(site_packages_of(Path::new(".venv")));
    // The interpreter the server runs Python models with (`LOOPLINE_PYTHON`), then the active one.
    if let Some(interpreter) = std::env::var_os("LOOPLINE_PYTHON") {
        candidates.extend(python_import_path(&interpreter).await);
    }
    candidates.extend(python_import_path(std::ffi::OsStr::new("python3")).await);
    let found = candidates.iter().find_map(|candidate| build_under(candidate));
    match &found {
        Some(build) => {
            tracing::info!(ui = %build.root().display(), "serving the MLflow web UI from the installed mlflow package")
        }
        None => tracing::info!(
            "no MLflow web UI build found (install mlflow in .venv or the active Python, or give --mlflow-ui): \
             / shows how to get one"
        ),
    }
    Ok(found)
}
