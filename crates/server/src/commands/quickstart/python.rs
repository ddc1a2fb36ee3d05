//! The Python the quickstart trains with (and the server's Python model worker runs): one given, one already
//! set up (LOOPLINE_PYTHON, the quickstart's own venv, the project's `.venv`), or a venv created with
//! scikit-learn, mlflow, pandas and pyarrow from the package index.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// What the quickstart needs from Python.
const CHECK: &str = "import sklearn, mlflow, pandas, pyarrow; print(f'scikit-learn {sklearn.__version__}, mlflow {mlflow.__version__}')";
/// What a created venv gets.
const PACKAGES: [&str; 4] = ["scikit-learn", "mlflow>=3,<4", "pandas", "pyarrow"];

/// The versions of what the quickstart needs, if `python` has it all.
fn usable(python: &Path) -> Option<String> {
    let output = Command::new(python)
        .args(["-c", CHECK])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A Python with what the quickstart needs, and what it has; creates `work/venv` when none is found.
pub fn find_or_create(given: Option<PathBuf>, work: &Path) -> Result<(PathBuf, String), String> {
    if let Some(python) = given {
        return usable(&python)
            .map(|versions| (python.clone(), versions))
            .ok_or_else(|| {
                format!(
                    "--python {}: it cannot import scikit-learn, mlflow, pandas and pyarrow; install them into it \
                 (pip install scikit-learn 'mlflow>=3' pandas pyarrow) or leave --python out to get a venv",
                    python.display()
                )
            });
    }
    let own = work.join("venv/bin/python");
    let mut candidates: Vec<PathBuf> = std::env::var_os("LOOPLINE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push(own.clone());
    candidates.push(PathBuf::from(".venv/bin/python"));
    for candidate in candidates {
        if let Some(versions) = usable(&candidate) {
            let absolute = std::path::absolute(&candidate).unwrap_or(candidate);
            return Ok((absolute, versions));
        }
    }
    create(work)?;
    let versions = usable(&own).ok_or("the new venv cannot import what was installed into it")?;
    Ok((std::path::absolute(&own).unwrap_or(own), versions))
}

fn create(work: &Path) -> Result<(), String> {
    let venv = work.join("venv");
    let base = ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import venv"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .ok_or("no Python 3 with the venv module found: install python3 and python3-venv, or give --python")?;
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("      {spinner} {msg} ({elapsed})").expect("a valid template"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message(format!("creating a venv in {}", venv.display()));
    run(Command::new(base).args(["-m", "venv"]).arg(&venv), "creating the venv")?;
    spinner.set_message(format!(
        "installing {} (a few minutes the first time)",
        PACKAGES.join(", ")
    ));
    run(
        Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES),
        "installing the packages",
    )?;
    spinner.finish_and_clear();
    Ok(())
}

fn run(command: &mut Command, doing: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{doing}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
    Err(format!(
        "{doing} failed ({}):\n{}",
        output.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
}
