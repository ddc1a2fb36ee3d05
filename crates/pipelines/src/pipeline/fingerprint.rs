//! What makes a step's result reusable: a fingerprint of everything it reads (its command, settings,
//! environment, parameter values and the content of its inputs), and the run cache that maps a fingerprint
//! to the outputs it produced, as `dvc repro`'s run cache does.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::spec::Step;
use crate::data::ContentId;

/// Bumped when what goes into a fingerprint changes meaning.
const FINGERPRINT_VERSION: u32 = 1;

/// An input as resolved for one run: what it is, and the content it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedInput {
    /// How the step names it.
    pub name: String,
    /// Its content id (or, for a model, its registry digest).
    pub content: String,
}

/// An output as produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedOutput {
    /// Its path in the project.
    pub path: String,
    /// Its content id.
    pub hash: String,
    /// Its size.
    pub size: u64,
}

/// What the run cache keeps of a step's successful run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedRun {
    /// The step.
    pub step: String,
    /// Its outputs.
    pub outputs: Vec<ProducedOutput>,
    /// Its result, for built-in steps (metrics, a registered version...).
    #[serde(default)]
    pub result: Value,
    /// When it finished, ms since the epoch.
    pub finished_ms: i64,
}

/// The fingerprint of a step run on these inputs with these parameter values.
pub fn fingerprint(step: &Step, params: &[(String, Value)], inputs: &[ResolvedInput]) -> String {
    let document = json!({
        "version": FINGERPRINT_VERSION,
        "kind": step.kind,
        "run": step.run,
        "shell": step.shell,
        "env": step.env,
        "with": step.with,
        "params": params,
        "inputs": inputs,
        "outputs": step.outputs,
    });
    blake3::hash(document.to_string().as_bytes()).to_hex().to_string()
}

/// The run cache of a project.
pub struct RunCache {
    directory: PathBuf,
}

impl RunCache {
    /// The run cache in `directory`.
    pub fn new(directory: &Path) -> RunCache {
        RunCache {
            directory: directory.to_path_buf(),
        }
    }

    fn path(&self, fingerprint: &str) -> PathBuf {
        let head = fingerprint.get(..2).unwrap_or("00");
        self.directory.join(head).join(format!("{fingerprint}.json"))
    }

    /// The recorded run with this fingerprint, if any (a damaged record is none).
    pub fn get(&self, fingerprint: &str) -> Option<CachedRun> {
        let bytes = std::fs::read(self.path(fingerprint)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records a run (through a temporary file, so a reader never sees half a record).
    pub fn put(&self, fingerprint: &str, run: &CachedRun) -> Result<(), String> {
        let path = self.path(fingerprint);
        let parent = path.parent().ok_or("the run cache has no directory")?;
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        let bytes = serde_json::to_vec(run).map_err(|e| e.to_string())?;
        crate::data::write_atomically(&path, &bytes)
            .map_err(|e| format!("recording the run of step '{}': {e}", run.step))
    }
}

/// Whether every output of a cached run is in the cache, so it can be restored.
pub fn restorable(run: &CachedRun, has: impl Fn(&ContentId) -> bool) -> bool {
    run.outputs
        .iter()
        .all(|output| ContentId::parse(&output.hash).is_ok_and(|id| has(&id)))
}
