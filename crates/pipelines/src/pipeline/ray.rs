//! Steps on a Ray cluster through its Jobs REST API (the head node's dashboard): the project is shipped as the
//! job's `working_dir` package (or named where it already is, on a filesystem every node shares), the step's
//! variables as `env_vars`, its resource request as the entrypoint's CPUs, GPUs and memory. The job's log is
//! read as it grows into the step's log; a timeout or cancellation stops the job and waits for it to end.

use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::executor::{Executor, Finished, Launch};
use super::ray_package::package;

/// Between two looks at a job.
const POLL: Duration = Duration::from_secs(1);
/// How long a stopped job may take to end.
const STOP_WAIT: Duration = Duration::from_secs(60);
/// The most of a job's log kept in memory (the rest still goes to the step's log).
const MAX_LOG_BYTES: usize = 64 << 20;

/// Where the cluster is and how steps reach it.
#[derive(Debug, Clone)]
pub struct RaySettings {
    /// The dashboard's address, `http://HOST:8265`.
    pub address: String,
    /// A token for a cluster with token authentication.
    pub token: Option<String>,
    /// The project is at the same path on every node (one machine, or a shared filesystem): it is named
    /// there (`local://`) instead of shipped, and outputs the steps write are seen here.
    pub shared_directory: bool,
}

/// Runs steps as Ray jobs.
pub struct RayExecutor {
    settings: RaySettings,
    http: reqwest::Client,
}

/// Quotes an argument for the shell Ray runs an entrypoint with.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A terminal status, if it is one.
fn terminal(status: &str) -> bool {
    matches!(status, "SUCCEEDED" | "FAILED" | "STOPPED")
}

/// Ray answers errors as plain text (often a traceback): its last lines say what went wrong.
async fn refusal(response: reqwest::Response, doing: &str) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().filter(|l| !l.trim().is_empty()).take(3).collect();
    let said: Vec<&str> = tail.into_iter().rev().collect();
    format!("{doing}: Ray answered {status}: {}", said.join(" / "))
}

impl RayExecutor {
    /// An executor for the cluster at `settings.address`.
    pub fn new(settings: RaySettings) -> Result<RayExecutor, String> {
        if !settings.address.starts_with("http://") && !settings.address.starts_with("https://") {
            return Err(format!(
                "the Ray address '{}' is not a URL; give the dashboard's, e.g. http://127.0.0.1:8265",
                settings.address
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| format!("cannot create an HTTP client: {e}"))?;
        Ok(RayExecutor {
            settings: RaySettings {
                address: settings.address.trim_end_matches('/').to_string(),
                ..settings
            },
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.settings.address));
        match &self.settings.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        doing: &str,
    ) -> Result<Value, String> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{doing}: cannot reach Ray at {}: {e}", self.settings.address))?;
        if !response.status().is_success() {
            return Err(refusal(response, doing).await);
        }
        // Read no further than a job's log may be kept (a head that never stops answering is cut off).
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("{doing}: Ray's answer: {e}"))?
        {
            if body.len() + chunk.len() > MAX_LOG_BYTES {
                return Err(format!(
                    "{doing}: Ray's answer is larger than {} MiB",
                    MAX_LOG_BYTES >> 20
                ));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("{doing}: Ray's answer: {e}"))
    }

    /// The job's `working_dir`: the project named where it is, or uploaded once per content.
    async fn working_dir(&self, directory: &Path) -> Result<String, String> {
        let directory = directory
            .canonicalize()
            .map_err(|e| format!("{}: {e}", directory.display()))?;
        if self.settings.shared_directory {
            return Ok(format!("local://{}", directory.display()));
        }
        let bytes = tokio::task::spawn_blocking(move || package(&directory))
            .await
            .map_err(|e| format!("packaging the project stopped: {e}"))??;
        let name = format!("_ray_pkg_{}.zip", &blake3::hash(&bytes).to_hex()[..40]);
        let path = format!("/api/packages/gcs/{name}");
        let present = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .map_err(|e| format!("asking Ray for the project's package: {e}"))?;
        match present.status().as_u16() {
            200 => {}
            404 => {
                let stored = self
                    .request(reqwest::Method::PUT, &path)
                    .body(bytes)
                    .send()
                    .await
                    .map_err(|e| format!("uploading the project to Ray: {e}"))?;
                if !stored.status().is_success() {
                    return Err(refusal(stored, "uploading the project to Ray").await);
                }
            }
            _ => return Err(refusal(present, "asking Ray for the project's package").await),
        }
        Ok(format!("gcs://{name}"))
    }

    /// What the job runs, its variables and its resources.
    fn submission(&self, launch: &Launch, working_dir: String, id: &str) -> Value {
        let entrypoint = if launch.shell {
            launch.argv.join(" ")
        } else {
            launch.argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
        };
        // Paths in the project given to the step (dataset versions placed for it) are relative on the cluster,
        // where the working directory is the package.
        let root = launch.directory.canonicalize().unwrap_or(launch.directory.clone());
        let env: serde_json::Map<String, Value> = launch
            .env
            .iter()
            .map(|(key, value)| {
                let shipped = match Path::new(value).strip_prefix(&root) {
                    Ok(relative) if !self.settings.shared_directory => relative.display().to_string(),
                    _ => value.clone(),
                };
                (key.clone(), Value::String(shipped))
            })
            .collect();
        let mut body = json!({
            "entrypoint": entrypoint,
            "submission_id": id,
            "runtime_env": {"working_dir": working_dir, "env_vars": env},
            "metadata": {"loopline_step": launch.step},
        });
        if launch.resources.cpus > 0.0 {
            body["entrypoint_num_cpus"] = json!(launch.resources.cpus);
        }
        if launch.resources.gpus > 0 {
            body["entrypoint_num_gpus"] = json!(launch.resources.gpus);
        }
        if launch.resources.memory_mb > 0 {
            body["entrypoint_memory"] = json!(launch.resources.memory_mb.saturating_mul(1 << 20));
        }
        body
    }

    /// The job's details.
    async fn job(&self, id: &str) -> Result<Value, String> {
        self.json(
            reqwest::Method::GET,
            &format!("/api/jobs/{id}"),
            None,
            "reading the job",
        )
        .await
    }

    /// Asks the job to stop and waits (bounded) until Ray says it ended.
    async fn stop(&self, id: &str) {
        let _ = self
            .request(reqwest::Method::POST, &format!("/api/jobs/{id}/stop"))
            .send()
            .await;
        let started = Instant::now();
        while started.elapsed() < STOP_WAIT {
            let job = self.job(id).await;
            if job.is_ok_and(|job| terminal(job["status"].as_str().unwrap_or_default())) {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        tracing::warn!(job = id, "the Ray job did not end after it was asked to stop");
    }

    async fn follow(
        &self,
        launch: &Launch,
        cancel: &CancellationToken,
        line: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Finished, String> {
        let mut log = tokio::fs::File::create(&launch.log)
            .await
            .map_err(|e| format!("{}: {e}", launch.log.display()))?;
        let working_dir = self.working_dir(&launch.directory).await?;
        let step: String = launch
            .step
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .take(40)
            .collect();
        let id = format!("loopline-{step}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        self.json(
            reqwest::Method::POST,
            "/api/jobs/",
            Some(self.submission(launch, working_dir, &id)),
            "submitting the step to Ray",
        )
        .await?;
        line(format!("submitted to Ray as job {id}"));
        let started = Instant::now();
        let mut reader = LogReader {
            shown: 0,
            partial: String::new(),
        };
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(POLL) => None,
                () = cancel.cancelled() => Some(Finished::Cancelled),
            };
            let stopping = stopping.or_else(|| (started.elapsed() > launch.timeout).then_some(Finished::TimedOut));
            self.read_log(&id, &mut reader, &mut log, line).await?;
            if let Some(finished) = stopping {
                self.stop(&id).await;
                self.read_log(&id, &mut reader, &mut log, line).await?;
                return Ok(finished);
            }
            let job = self.job(&id).await?;
            let status = job["status"].as_str().unwrap_or_default();
            if terminal(status) {
                // What the job wrote after the last read.
                self.read_log(&id, &mut reader, &mut log, line).await?;
                if !reader.partial.is_empty() {
                    line(std::mem::take(&mut reader.partial));
                }
                let _ = log.flush().await;
                return Ok(match status {
                    "SUCCEEDED" => Finished::Succeeded,
                    "STOPPED" => Finished::Failed(format!("the Ray job {id} was stopped outside Loopline")),
                    _ => Finished::Failed(format!(
                        "the Ray job {id} failed: {}{}",
                        job["message"].as_str().unwrap_or("no message"),
                        job["error_type"]
                            .as_str()
                            .map(|t| format!(" ({t})"))
                            .unwrap_or_default()
                    )),
                });
            }
        }
    }

    /// Appends what the job's log gained since the last read to the step's log, line by line.
    async fn read_log(
        &self,
        id: &str,
        reader: &mut LogReader,
        log: &mut tokio::fs::File,
        line: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), String> {
        let Ok(answer) = self
            .json(
                reqwest::Method::GET,
                &format!("/api/jobs/{id}/logs"),
                None,
                "reading the job's log",
            )
            .await
        else {
            return Ok(());
        };
        let logs = answer["logs"].as_str().unwrap_or_default();
        if logs.len() <= reader.shown || !logs.is_char_boundary(reader.shown) {
            return Ok(());
        }
        let new = &logs[reader.shown..];
        log.write_all(new.as_bytes()).await.map_err(|e| e.to_string())?;
        reader.partial.push_str(new);
        while let Some(end) = reader.partial.find('\n') {
            line(reader.partial[..end].to_string());
            reader.partial.drain(..=end);
        }
        if reader.partial.len() > MAX_LOG_BYTES {
            reader.partial.clear();
        }
        reader.shown = logs.len();
        Ok(())
    }
}

/// How far a job's log has been read.
struct LogReader {
    shown: usize,
    partial: String,
}

#[async_trait]
impl Executor for RayExecutor {
    async fn run(
        &self,
        launch: &Launch,
        cancel: &CancellationToken,
        line: &(dyn Fn(String) + Send + Sync),
    ) -> Finished {
        match self.follow(launch, cancel, line).await {
            Ok(finished) => finished,
            Err(message) => Finished::Failed(message),
        }
    }

    fn outputs_come_back(&self) -> bool {
        self.settings.shared_directory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("train.py"), "train.py");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf ~)"), "'$(rm -rf ~)'");
        assert_eq!(shell_quote(""), "''");
    }
}
