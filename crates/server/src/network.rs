//! The HTTP listener: connections are accepted up to a cap, each gets a header-read timeout that also closes
//! idle keep-alive connections, request bodies that stall are cut off, and shutdown drains what is in flight.
//! axum's own `serve` sets no timer, so idle and slow-header ("slowloris") connections were held forever and,
//! at the descriptor limit, the server stopped answering.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};

use clap::Args;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long shutdown waits for requests in flight (past the default 60 s request timeout).
const DRAIN_TIME: Duration = Duration::from_secs(90);

/// Connection and browser-origin settings, shared by `loopline server` and `loopline serve`.
#[derive(Debug, Clone, Args)]
pub struct NetworkOptions {
    /// Most connections open at once; further clients wait in the listen queue until one closes.
    #[arg(long, env = "LOOPLINE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, and the longest an idle keep-alive connection is
    /// kept open.
    #[arg(long, env = "LOOPLINE_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 30)]
    pub header_read_timeout_seconds: u64,
    /// Seconds a request body may go without sending any data before the request fails (uploads of any
    /// size are fine while data keeps coming).
    #[arg(long, env = "LOOPLINE_BODY_READ_TIMEOUT_SECONDS", default_value_t = 60)]
    pub body_read_timeout_seconds: u64,
    /// Host header values this server answers to, comma-separated, `*` as a wildcard (`*` alone: any).
    /// Default: localhost, 127.0.0.1, [::1] and private-network addresses on any port, plus `--host` when it
    /// names one address. Guards against DNS rebinding: a web page whose name resolves to this machine.
    #[arg(long, env = "LOOPLINE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Web origins (`https://ui.example.com`) allowed to make state-changing cross-origin requests,
    /// comma-separated (`*`: any). Pages on localhost and on this server's own origin are always allowed.
    #[arg(long, env = "LOOPLINE_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// URL schemes registry webhooks may use, comma-separated (MLflow's default: https only).
    #[arg(
        long,
        env = "LOOPLINE_WEBHOOK_ALLOWED_SCHEMES",
        value_delimiter = ',',
        default_value = "https"
    )]
    pub webhook_allowed_schemes: Vec<String>,
    /// Let registry webhooks point at private, loopback and link-local addresses (off: a webhook could
    /// otherwise reach services inside the network, as MLflow guards too). Never at this server itself.
    #[arg(long, env = "LOOPLINE_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default_value_t = false)]
    pub webhook_allow_private_addresses: bool,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            max_connections: 1024,
            header_read_timeout_seconds: 30,
            body_read_timeout_seconds: 60,
            allowed_hosts: Vec::new(),
            cors_allowed_origins: Vec::new(),
            webhook_allowed_schemes: vec!["https".to_string()],
            webhook_allow_private_addresses: false,
        }
    }
}

impl NetworkOptions {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".to_string());
        }
        if self.header_read_timeout_seconds == 0 || self.body_read_timeout_seconds == 0 {
            return Err("--header-read-timeout-seconds and --body-read-timeout-seconds must be at least 1".to_string());
        }
        if let Some(scheme) = self
            .webhook_allowed_schemes
            .iter()
            .find(|scheme| !matches!(scheme.as_str(), "http" | "https"))
        {
            return Err(format!(
                "--webhook-allowed-schemes: '{scheme}' is not http or https; webhooks are HTTP requests"
            ));
        }
        Ok(())
    }
}

/// Raises the soft limit on open descriptors to the hard limit, so the connection cap, not the descriptor
/// limit, decides when clients wait. Says what it found.
pub fn raise_descriptor_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(open_files = limit, "descriptor limit");
            // Each connection takes one descriptor; the stores, models and logs need some of their own.
            if (limit as usize) < max_connections.saturating_add(256) {
                tracing::warn!(
                    open_files = limit,
                    max_connections,
                    "the descriptor limit is close to --max-connections; raise it (ulimit -n) or lower the cap"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot raise the descriptor limit"),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight finish.
pub async fn serve_connections(
    listener: TcpListener,
    router: axum::Router,
    options: &NetworkOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let body_timeout = Duration::from_secs(options.body_read_timeout_seconds);
    let router = router.layer(axum::middleware::map_request(
        move |request: axum::extract::Request| async move {
            request.map(|body| axum::body::Body::new(StallTimeoutBody::new(body, body_timeout)))
        },
    ));
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(options.header_read_timeout_seconds))
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut cap_reported = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                cap_reported = false;
                slot
            }
            Err(_) => {
                if !cap_reported {
                    tracing::warn!(
                        max_connections = options.max_connections,
                        "connection limit reached: new clients wait until a connection closes (raise --max-connections if this is normal load)"
                    );
                    cap_reported = true;
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the connection semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Running out of descriptors or memory is temporary: wait a moment instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer's address goes with each request (the audit trail records it).
        let routed = service.clone();
        let peer = loopline_http_api::access::PeerAddress::new(peer);
        let with_peer = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(peer.clone());
            hyper::service::Service::call(&routed, request)
        });
        let connection = http.serve_connection(TokioIo::new(stream), with_peer);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timeout, malformed request): hyper has answered what it could.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Idle connections close at once, requests in flight finish; a client that holds on past the drain time is
    // dropped with the process.
    if tokio::time::timeout(DRAIN_TIME, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            seconds = DRAIN_TIME.as_secs(),
            "connections still open after the drain time were dropped"
        );
    }
    Ok(())
}

/// A request body that fails when no data arrives for `timeout`, keeping the inner body's declared size (so
/// a declared length past a limit is still refused before anything is read).
struct StallTimeoutBody {
    inner: Body,
    timeout: Duration,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallTimeoutBody {
    fn new(inner: Body, timeout: Duration) -> StallTimeoutBody {
        StallTimeoutBody {
            inner,
            timeout,
            stall: None,
        }
    }
}

/// The request body stopped sending data.
#[derive(Debug)]
struct BodyStalled(Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "the request body sent no data for {:?}; the request was abandoned",
            self.0
        )
    }
}

impl std::error::Error for BodyStalled {}

impl HttpBody for StallTimeoutBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        let timeout = this.timeout;
        let stall = this.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(context).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyStalled(timeout)))));
        }
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(context));
        this.stall = None;
        Poll::Ready(frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
