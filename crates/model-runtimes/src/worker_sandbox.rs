//! Least privilege for Python model workers: what a worker inherits from the server (its own process group,
//! a short list of environment variables, a private home and temporary directory, resource limits the worker
//! applies to itself before model code runs) and, on Linux, a Landlock rule set so that it can read its
//! model, its Python installation and the system's libraries, and write only its private directory.
//!
//! Landlock applies to the thread that asks for it and to the processes that thread starts, so the rule set
//! is made on a short-lived thread that then starts the worker: the server's own threads keep every right.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;

use landlock::{
    ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus, path_beneath_rules,
};

/// Environment variables a worker inherits; everything else (database URLs, cloud credentials, tokens) stays
/// with the server.
const INHERITED_VARIABLES: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "VIRTUAL_ENV",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
];

/// Limits for worker processes, from the server's environment (0 turns one off).
const MEMORY_LIMIT_VARIABLE: &str = "LOOPLINE_WORKER_MEMORY_BYTES";
const CPU_LIMIT_VARIABLE: &str = "LOOPLINE_WORKER_CPU_SECONDS";
const OPEN_FILES_LIMIT_VARIABLE: &str = "LOOPLINE_WORKER_OPEN_FILES";
/// Defaults: 8 GiB of data, a day of CPU time (a worker past it is restarted), 1,024 open files.
const DEFAULT_LIMITS: [(&str, u64); 3] = [
    (MEMORY_LIMIT_VARIABLE, 8 << 30),
    (CPU_LIMIT_VARIABLE, 24 * 60 * 60),
    (OPEN_FILES_LIMIT_VARIABLE, 1_024),
];

/// Least privilege for a worker: its own process group (killed as a whole), only the inherited variables
/// above, a private home and temporary directory, and resource limits the worker applies to itself before
/// any model code runs.
pub(crate) fn confine(command: &mut Command, private_temporary: &Path) {
    std::os::unix::process::CommandExt::process_group(command, 0);
    command.env_clear();
    for name in INHERITED_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .env("HOME", private_temporary)
        .env("TMPDIR", private_temporary)
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (name, default) in DEFAULT_LIMITS {
        let value = std::env::var(name)
            .ok()
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(default);
        command.env(name, value.to_string());
    }
}

/// What a worker may touch.
pub(crate) struct WorkerPaths {
    /// The model directory (read).
    pub model: PathBuf,
    /// Where the worker script is (read).
    pub script_directory: PathBuf,
    /// The interpreter as configured (its virtualenv and installation are read).
    pub interpreter: PathBuf,
    /// The worker's private directory (read and write).
    pub private_directory: PathBuf,
}

/// Extra paths workers may read, colon-separated (for example a directory an editable install points to).
const EXTRA_READ_PATHS_VARIABLE: &str = "LOOPLINE_WORKER_READ_PATHS";

/// System directories a Python process reads: libraries, certificates, locale data, `/proc` and `/sys`.
const SYSTEM_READ_PATHS: &[&str] = &[
    "/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys", "/dev", "/run",
];

/// Devices a worker may write: the null device and shared memory (multiprocessing's semaphores).
const DEVICE_WRITE_PATHS: &[&str] = &["/dev/null", "/dev/shm"];

/// The interpreter found on `PATH` when it is a bare name.
fn resolve_interpreter(interpreter: &Path) -> PathBuf {
    if interpreter.components().count() > 1 {
        return interpreter.to_path_buf();
    }
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|directory| directory.join(interpreter))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| interpreter.to_path_buf())
}

impl WorkerPaths {
    fn read_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = SYSTEM_READ_PATHS.iter().map(PathBuf::from).collect();
        paths.push(self.model.clone());
        paths.push(self.script_directory.clone());
        let interpreter = resolve_interpreter(&self.interpreter);
        // The virtualenv (`.venv/bin/python` -> `.venv`) and the installation it links to.
        for executable in [Some(interpreter.clone()), std::fs::canonicalize(&interpreter).ok()]
            .into_iter()
            .flatten()
        {
            if let Some(prefix) = executable.parent().and_then(Path::parent) {
                paths.push(prefix.to_path_buf());
            }
        }
        if let Some(extra) = std::env::var_os(EXTRA_READ_PATHS_VARIABLE) {
            paths.extend(std::env::split_paths(&extra));
        }
        paths
    }

    fn write_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = DEVICE_WRITE_PATHS.iter().map(PathBuf::from).collect();
        paths.push(self.private_directory.clone());
        paths
    }
}

const LANDLOCK_ABI: ABI = ABI::V2;

fn restrict_this_thread(paths: &WorkerPaths) -> Result<RulesetStatus, RulesetError> {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .create()?
        .add_rules(path_beneath_rules(
            paths.read_paths(),
            AccessFs::from_read(LANDLOCK_ABI),
        ))?
        .add_rules(path_beneath_rules(
            paths.write_paths(),
            AccessFs::from_all(LANDLOCK_ABI),
        ))?
        .restrict_self()?;
    Ok(status.ruleset)
}

/// Starts `command` under the worker's Landlock rule set (where the kernel has Landlock; elsewhere the worker
/// starts with the rest of its confinement and the server says so once).
pub(crate) fn spawn_confined(command: &mut Command, paths: &WorkerPaths) -> std::io::Result<Child> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                match restrict_this_thread(paths) {
                    Ok(RulesetStatus::FullyEnforced) => {}
                    Ok(status) => report_weaker_sandbox(&format!("Landlock is {status:?} on this kernel")),
                    Err(error) => report_weaker_sandbox(&error.to_string()),
                }
                command.spawn()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the thread starting the Python worker panicked")))
    })
}

fn report_weaker_sandbox(reason: &str) {
    static REPORTED: OnceLock<()> = OnceLock::new();
    REPORTED.get_or_init(|| {
        tracing::warn!(
            %reason,
            "Python workers run without a file-system sandbox: they can read and write what the server's user can"
        );
    });
}

/// Whether this kernel enforces Landlock rule sets (checked on a throwaway thread with a rule set that
/// allows everything).
pub fn landlock_enforced() -> bool {
    std::thread::spawn(|| {
        let status = Ruleset::default()
            .handle_access(AccessFs::from_all(LANDLOCK_ABI))
            .and_then(|ruleset| ruleset.create())
            .and_then(|ruleset| ruleset.add_rules(path_beneath_rules(["/"], AccessFs::from_all(LANDLOCK_ABI))))
            .and_then(|ruleset| ruleset.restrict_self());
        matches!(status, Ok(status) if status.ruleset == RulesetStatus::FullyEnforced)
    })
    .join()
    .unwrap_or(false)
}
