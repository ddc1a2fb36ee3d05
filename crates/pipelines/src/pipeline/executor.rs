//! Where a step's command runs. The executor is a trait: local processes by default, a Ray cluster through
//! its Jobs API when one machine is not enough (and a Kubernetes Jobs executor can follow).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::spec::Resources;

/// Seconds a stopped command gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long output is still read after a step ended (a process that left the group may hold it open).
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// A command to run.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The step's name (for logs and job names).
    pub step: String,
    /// Arguments; with `shell`, one command line for `sh -c`.
    pub argv: Vec<String>,
    /// Whether `argv` is one shell line.
    pub shell: bool,
    /// The working directory (the project's root).
    pub directory: PathBuf,
    /// Variables added to the environment.
    pub env: BTreeMap<String, String>,
    /// When it is stopped.
    pub timeout: Duration,
    /// What it asked for.
    pub resources: Resources,
    /// Where its output goes (standard output and error, interleaved by line).
    pub log: PathBuf,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Exit code 0.
    Succeeded,
    /// Another exit code or a signal.
    Failed(String),
    /// Stopped at its timeout.
    TimedOut,
    /// Stopped because the run was cancelled.
    Cancelled,
}

/// Runs commands.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs one command to its end, calling `line` with each line of its output.
    async fn run(&self, launch: &Launch, cancel: &CancellationToken, line: &(dyn Fn(String) + Send + Sync))
    -> Finished;

    /// Whether files a command writes are seen in the project afterwards (so a step may declare outputs).
    fn outputs_come_back(&self) -> bool {
        true
    }
}

/// Local processes: each command in a process group of its own, so a timeout or cancellation stops what it
/// started too.
pub struct LocalExecutor;

#[async_trait]
impl Executor for LocalExecutor {
    async fn run(
        &self,
        launch: &Launch,
        cancel: &CancellationToken,
        line: &(dyn Fn(String) + Send + Sync),
    ) -> Finished {
        let mut command = if launch.shell {
            let mut command = tokio::process::Command::new("sh");
            command.arg("-c").arg(launch.argv.join(" "));
            command
        } else {
            let mut command = tokio::process::Command::new(&launch.argv[0]);
            command.args(&launch.argv[1..]);
            command
        };
        command
            .current_dir(&launch.directory)
            .envs(&launch.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut log = match tokio::fs::File::create(&launch.log).await {
            Ok(file) => file,
            Err(e) => return Finished::Failed(format!("cannot write its log {}: {e}", launch.log.display())),
        };
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return Finished::Failed(format!("cannot start '{}': {e}", launch.argv[0])),
        };
        let group = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32));
        // Where the group is, for a server that restarts after a crash to stop what the step left running.
        let pid_file = launch.log.with_extension("pid");
        if let Some(group) = group {
            let _ = tokio::fs::write(&pid_file, group.as_raw_nonzero().to_string()).await;
        }
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<String>(256);
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(forward(BufReader::new(stdout), sender.clone())));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(forward(BufReader::new(stderr), sender.clone())));
        }
        drop(sender);
        let deadline = tokio::time::sleep(launch.timeout);
        tokio::pin!(deadline);
        let mut stopped: Option<Finished> = None;
        let status = loop {
            tokio::select! {
                Some(text) = receiver.recv() => {
                    // One write per line, so a reader never sees a line without its end.
                    let _ = log.write_all(format!("{text}\n").as_bytes()).await;
                    line(text);
                }
                status = child.wait() => break status,
                () = &mut deadline, if stopped.is_none() => {
                    stop(group, &mut child).await;
                    stopped = Some(Finished::TimedOut);
                }
                () = cancel.cancelled(), if stopped.is_none() => {
                    stop(group, &mut child).await;
                    stopped = Some(Finished::Cancelled);
                }
            }
        };
        // The step is over: whatever it left running in its group goes with it (a background child would
        // otherwise hold the output open, and outlive a timeout).
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = tokio::fs::remove_file(&pid_file).await;
        let drained = tokio::time::timeout(DRAIN_LIMIT, async {
            while let Some(text) = receiver.recv().await {
                let _ = log.write_all(format!("{text}\n").as_bytes()).await;
                line(text);
            }
        });
        tokio::select! {
            _ = drained => {}
            () = cancel.cancelled(), if stopped.is_none() => stopped = Some(Finished::Cancelled),
        }
        for reader in readers {
            reader.abort();
        }
        let _ = log.flush().await;
        if let Some(stopped) = stopped {
            return stopped;
        }
        match status {
            Ok(status) if status.success() => Finished::Succeeded,
            Ok(status) => match status.code() {
                Some(code) => Finished::Failed(format!("exited with code {code}")),
                None => Finished::Failed("was killed by a signal".to_string()),
            },
            Err(e) => Finished::Failed(format!("could not be waited for: {e}")),
        }
    }
}

/// Sends each line of a stream (lossily decoded, at most 64 KiB per line).
async fn forward<R: tokio::io::AsyncRead + Unpin>(mut reader: BufReader<R>, sender: tokio::sync::mpsc::Sender<String>) {
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match (&mut reader).take(64 << 10).read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buffer)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                if sender.send(text).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Kills what a step of a run that ended with its server (`kill -9`) left running: each `STEP.pid` in the run's
/// directory names a process group, killed when its leader still works in the project (so a reused process id
/// of something else is left alone).
pub fn kill_leftovers(run_directory: &std::path::Path, project: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(run_directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pid") {
            continue;
        }
        let group = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(group) = group {
            let cwd = std::fs::read_link(format!("/proc/{}/cwd", group.as_raw_nonzero()));
            if cwd.is_ok_and(|cwd| cwd == project) {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// SIGTERM to the process group, then SIGKILL if it is still there after the grace period.
async fn stop(group: Option<rustix::process::Pid>, child: &mut tokio::process::Child) {
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
    }
    let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
    // Children that ignore SIGTERM are in the group still, even when the leader went.
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.kill().await;
}
