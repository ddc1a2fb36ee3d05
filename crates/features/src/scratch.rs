//! Temporary files and directories of runs in progress, named with the process id so that what a killed run
//! left behind can be told from what a live run is using, and removed by the next run in the same place.
//! A command-line run also removes its own when it is interrupted (`remove_all`, called from a signal
//! watcher).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The prefix of scratch names made by this process: `<kind>-<pid>-`.
pub fn prefix(kind: &str) -> String {
    format!("{kind}-{}-", std::process::id())
}

/// Remembers a path to remove if the run is interrupted.
pub fn track(path: &Path) {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(path.to_path_buf());
}

/// Forgets a path (it was removed or kept on purpose).
pub fn untrack(path: &Path) {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|p| p != path);
}

/// Removes every tracked path (on an interrupted run).
pub fn remove_all() {
    for path in LIVE.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Removes what runs of `kind` left in `dir` when their process is gone (killed, or the machine restarted).
pub fn sweep(dir: &Path, kind: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let start = format!("{kind}-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&start)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        tracing_free_log(&path);
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

fn tracing_free_log(path: &Path) {
    eprintln!("removing {}, left by an interrupted run", path.display());
}
