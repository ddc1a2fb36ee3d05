//! Test helpers: a real Loopline server started in-process on port 0 with temporary storage, and a raw
//! HTTP client for requests that ordinary clients would normalise (such as `..` in paths).

pub mod fake_llm;
pub mod kept;

pub use kept::KeptConnection;

use loopline_server::config::ServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A running server; stopped when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The bound address.
    pub address: SocketAddr,
    /// Where its SQLite database and artifacts live.
    pub data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _temporary: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on SQLite and a local artifact directory in a fresh temporary directory.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None, None).await
    }

    /// Starts a server with explicit storage (None = embedded default).
    pub async fn start_with(
        backend_store_uri: Option<String>,
        artifacts_destination: Option<String>,
    ) -> anyhow::Result<Self> {
        Self::start_configured(
            backend_store_uri,
            artifacts_destination,
            Default::default(),
            Default::default(),
        )
        .await
    }

    /// Starts a server on embedded storage with these serving settings.
    pub async fn start_serving(serving: loopline_server::config::ServingOptions) -> anyhow::Result<Self> {
        Self::start_configured(None, None, serving, Default::default()).await
    }

    /// Starts a server on embedded storage with these connection and origin settings.
    pub async fn start_network(network: loopline_server::network::NetworkOptions) -> anyhow::Result<Self> {
        Self::start_configured(None, None, Default::default(), network).await
    }

    async fn start_configured(
        backend_store_uri: Option<String>,
        artifacts_destination: Option<String>,
        serving: loopline_server::config::ServingOptions,
        network: loopline_server::network::NetworkOptions,
    ) -> anyhow::Result<Self> {
        let temporary = tempfile::tempdir()?;
        let data_dir = temporary.path().to_path_buf();
        let config = ServerConfig {
            host: "127.0.0.1".to_string(),
            port: 0,
            backend_store_uri: backend_store_uri.unwrap_or_default(),
            artifacts_destination: artifacts_destination.unwrap_or_default(),
            data_dir: data_dir.clone(),
            serving,
            network,
            pipelines: Default::default(),
            registry: Default::default(),
            ui: Default::default(),
            auth: Default::default(),
            gateway: Default::default(),
        }
        .with_defaults();
        Self::launch(config, temporary).await
    }

    /// The configuration of a server on embedded defaults in `data_dir`, on a free port; tests change what
    /// they need with `ServerConfig { field: ..., ..TestServer::config_in(dir) }`.
    pub fn config_in(data_dir: &std::path::Path) -> ServerConfig {
        ServerConfig {
            host: "127.0.0.1".to_string(),
            port: 0,
            backend_store_uri: String::new(),
            artifacts_destination: String::new(),
            data_dir: data_dir.to_path_buf(),
            serving: Default::default(),
            network: Default::default(),
            pipelines: Default::default(),
            registry: Default::default(),
            ui: Default::default(),
            auth: Default::default(),
            gateway: Default::default(),
        }
    }

    /// A server on embedded defaults in `directory` whose LLM gateway reads `gateway_yaml` (written to
    /// `directory/gateway.yaml`).
    pub async fn start_gateway(directory: &std::path::Path, gateway_yaml: &str) -> anyhow::Result<Self> {
        let path = directory.join("gateway.yaml");
        std::fs::write(&path, gateway_yaml)?;
        let mut config = Self::config_in(&directory.join("data"));
        config.gateway.config = Some(path);
        Self::start_with_config(config.with_defaults()).await
    }

    /// Starts a server with this exact configuration (for restarts on the same storage).
    pub async fn start_with_config(config: ServerConfig) -> anyhow::Result<Self> {
        Self::launch(config, tempfile::tempdir()?).await
    }

    async fn launch(config: ServerConfig, temporary: tempfile::TempDir) -> anyhow::Result<Self> {
        let data_dir = config.data_dir.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (sender, receiver) = oneshot::channel::<()>();
        let task = tokio::spawn(loopline_server::serve(config, listener, async move {
            let _ = receiver.await;
        }));
        let server = TestServer {
            base_url: format!("http://{address}"),
            address,
            data_dir,
            shutdown: Some(sender),
            task: Some(task),
            _temporary: temporary,
        };
        server.wait_until_healthy().await?;
        Ok(server)
    }

    async fn wait_until_healthy(&self) -> anyhow::Result<()> {
        // The listener is bound before serve() runs, so connections queue until the app is ready;
        // one request that succeeds is proof of readiness, no polling loop on a clock.
        let response = raw_request(self.address, "GET", "/health", &[], b"").await?;
        anyhow::ensure!(response.status == 200, "server unhealthy: {}", response.body_text());
        Ok(())
    }

    /// URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }
}

/// A response read by [`raw_request`].
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status code.
    pub status: u16,
    /// Header lines, lowercased names.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body when it is not JSON: tests only).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.body_text()))
    }
}

/// Sends one HTTP/1.1 request exactly as written (no path normalisation) and reads the whole response.
pub async fn raw_request(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<RawResponse> {
    let mut stream = TcpStream::connect(address).await?;
    let mut request = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
    {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    // The body is written while the answer is read: a server may answer before reading all of it (413 for an
    // oversized body) and close, and the client then sees a broken pipe or a reset. As HTTP clients do, a
    // failed body write is ignored and the answer already sent is kept.
    let (mut reader, mut writer) = stream.into_split();
    let body = body.to_vec();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&body).await;
        writer
    });
    let mut response = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(read) => response.extend_from_slice(&chunk[..read]),
            Err(error) if !response.is_empty() && error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => return Err(error.into()),
        }
    }
    drop(writing.await);
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header terminator in response"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line.split_whitespace().nth(1).unwrap_or("0").parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let raw_body = response[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked { dechunk(&raw_body)? } else { raw_body };
    Ok(RawResponse { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or_else(|| anyhow::anyhow!("bad chunk"))?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end])?.trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A JSON POST/PATCH/DELETE with `reqwest`, returning status and JSON body.
pub async fn send_json(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let response = client.request(method, url).json(body).send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let value = if text.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&text)?
    };
    Ok((status, value))
}
