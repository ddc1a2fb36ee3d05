//! Where the tests find all-MiniLM-L6-v2: the directory in LOOPLINE_EMBEDDINGS_MODEL, or the Python package
//! that ships it in LOOPLINE_PYTHON's environment (the project venv by default; scripts/test.sh installs it).

use std::path::{Path, PathBuf};

pub fn model_directory() -> PathBuf {
    if let Ok(directory) = std::env::var("LOOPLINE_EMBEDDINGS_MODEL") {
        return PathBuf::from(directory);
    }
    let python = std::env::var("LOOPLINE_PYTHON").unwrap_or_else(|_| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
        assert!(
            venv.exists(),
            "set LOOPLINE_PYTHON or create the project venv (scripts/test.sh does)"
        );
        venv.display().to_string()
    });
    loopline_embeddings::locate::model_directory("all-MiniLM-L6-v2", &[PathBuf::from(python)]).unwrap()
}
