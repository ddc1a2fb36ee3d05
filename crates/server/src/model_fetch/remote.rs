//! A tracking server reached over MLflow's REST API (Loopline or MLflow itself), as the mlflow CLI reaches
//! the one in `MLFLOW_TRACKING_URI`; credentials from `MLFLOW_TRACKING_TOKEN` or
//! `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD`.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Entry, ModelRepository};

/// A remote tracking server.
pub struct RemoteRepository {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
    basic: Option<(String, String)>,
}

impl RemoteRepository {
    /// The server at `tracking_uri` (`http://` or `https://`).
    pub fn new(tracking_uri: &str) -> Result<RemoteRepository, String> {
        if !tracking_uri.starts_with("http://") && !tracking_uri.starts_with("https://") {
            return Err(format!(
                "MLFLOW_TRACKING_URI is '{tracking_uri}'; models:/ and runs:/ URIs need a tracking server URL such as \
                 http://127.0.0.1:5000"
            ));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| format!("cannot create an HTTP client: {e}"))?;
        let user = std::env::var("MLFLOW_TRACKING_USERNAME").ok();
        let password = std::env::var("MLFLOW_TRACKING_PASSWORD").ok();
        Ok(RemoteRepository {
            base: tracking_uri.trim_end_matches('/').to_string(),
            client,
            token: std::env::var("MLFLOW_TRACKING_TOKEN").ok(),
            basic: user.zip(password),
        })
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.token, &self.basic) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some((user, password))) => request.basic_auth(user, Some(password)),
            (None, None) => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response, String> {
        let response = self
            .authorised(request)
            .send()
            .await
            .map_err(|e| format!("cannot reach the tracking server at {} ({what}): {e}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or("no message");
        Err(format!("{what}: the tracking server answered {status}: {message}"))
    }

    async fn get_json(&self, path: &str, query: &[(&str, &str)], what: &str) -> Result<Value, String> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query)
                    .finish(),
            );
        }
        let request = self.client.get(url);
        self.send(request, what)
            .await?
            .json()
            .await
            .map_err(|e| format!("{what}: the tracking server's answer is not JSON: {e}"))
    }

    async fn download_uri(&self, name: &str, version: &str) -> Result<String, String> {
        let answer = self
            .get_json(
                "/api/2.0/mlflow/model-versions/get-download-uri",
                &[("name", name), ("version", version)],
                &format!("locating model '{name}' version {version}"),
            )
            .await?;
        answer["artifact_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("the tracking server gave no artifact_uri for '{name}' version {version}"))
    }
}

#[async_trait]
impl ModelRepository for RemoteRepository {
    async fn version_location(&self, name: &str, reference: Option<&str>) -> Result<(String, String), String> {
        let version = match reference {
            Some(alias) if alias.starts_with('@') => {
                let alias = &alias[1..];
                let answer = self
                    .get_json(
                        "/api/2.0/mlflow/registered-models/alias",
                        &[("name", name), ("alias", alias)],
                        &format!("resolving alias '{alias}' of model '{name}'"),
                    )
                    .await?;
                answer["model_version"]["version"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("the tracking server gave no version for {name}@{alias}"))?
            }
            Some(number) if number.chars().all(|c| c.is_ascii_digit()) => number.to_string(),
            other => {
                let stages: Vec<&str> = match other {
                    None => Vec::new(),
                    Some(stage) if stage.eq_ignore_ascii_case("latest") => Vec::new(),
                    Some(stage) => vec![stage],
                };
                let request = self
                    .client
                    .post(format!(
                        "{}/api/2.0/mlflow/registered-models/get-latest-versions",
                        self.base
                    ))
                    .json(&json!({"name": name, "stages": stages}));
                let answer: Value = self
                    .send(request, &format!("finding the newest version of '{name}'"))
                    .await?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                answer["model_versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["version"].as_str()?.parse::<i64>().ok())
                    .max()
                    .map(|v| v.to_string())
                    .ok_or_else(|| {
                        format!(
                            "model '{name}' has no version{}",
                            other.map(|s| format!(" in stage {s}")).unwrap_or_default()
                        )
                    })?
            }
        };
        let location = self.download_uri(name, &version).await?;
        Ok((version, location))
    }

    async fn logged_model_location(&self, model_id: &str) -> Result<String, String> {
        let answer = self
            .get_json(
                &format!("/api/2.0/mlflow/logged-models/{model_id}"),
                &[],
                &format!("reading logged model {model_id}"),
            )
            .await?;
        answer["model"]["info"]["artifact_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("logged model {model_id} has no artifact location"))
    }

    async fn run_location(&self, run_id: &str) -> Result<(String, String), String> {
        let answer = self
            .get_json(
                "/api/2.0/mlflow/runs/get",
                &[("run_id", run_id)],
                &format!("reading run {run_id}"),
            )
            .await?;
        let info = &answer["run"]["info"];
        match (info["artifact_uri"].as_str(), info["experiment_id"].as_str()) {
            (Some(uri), Some(experiment)) => Ok((uri.to_string(), experiment.to_string())),
            _ => Err(format!("run {run_id} has no artifact location")),
        }
    }

    async fn run_model_location(
        &self,
        run_id: &str,
        experiment_id: &str,
        name: &str,
    ) -> Result<Option<String>, String> {
        let request = self
            .client
            .post(format!("{}/api/2.0/mlflow/logged-models/search", self.base))
            .json(&json!({
                "experiment_ids": [experiment_id],
                "filter": super::runs_models_filter(run_id),
                "max_results": 100,
            }));
        let answer: Value = self
            .send(request, &format!("finding the logged models of run {run_id}"))
            .await?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer["models"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["info"]["name"].as_str() == Some(name))
            .and_then(|m| m["info"]["artifact_uri"].as_str())
            .map(str::to_string))
    }

    async fn list(&self, path: &str) -> Result<Vec<Entry>, String> {
        let answer = self
            .get_json(
                "/api/2.0/mlflow-artifacts/artifacts",
                &[("path", path)],
                &format!("listing artifacts at {path}"),
            )
            .await?;
        Ok(answer["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                Some(Entry {
                    name: f["path"].as_str()?.to_string(),
                    is_dir: f["is_dir"].as_bool().unwrap_or(false),
                })
            })
            .collect())
    }

    async fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        let encoded: Vec<String> = path
            .split('/')
            .map(|segment| {
                percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
            })
            .collect();
        let request = self.client.get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            encoded.join("/")
        ));
        let response = self.send(request, &format!("downloading {path}")).await?;
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("downloading {path}: {e}"))
    }
}
