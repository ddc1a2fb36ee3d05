//! `loopline-loadgen URL BODY_FILE CONCURRENCY SECONDS [CONTENT_TYPE]`: keeps CONCURRENCY HTTP/1.1 keep-alive
//! connections busy for SECONDS, each posting BODY_FILE as soon as its previous answer arrived (a closed loop,
//! so a slow server is measured as slow rather than as a growing backlog). Prints one JSON line: requests,
//! errors, requests per second, and latency percentiles in milliseconds over all answered requests.
//! `LOADGEN_AUTHORIZATION`, when set, is sent as every request's Authorization header.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

struct Outcome {
    latencies: Vec<Duration>,
    errors: u64,
}

async fn connection(
    url: hyper::Uri,
    body: Bytes,
    content_type: String,
    authorization: Option<String>,
    until: Instant,
) -> Outcome {
    let mut outcome = Outcome {
        latencies: Vec::new(),
        errors: 0,
    };
    let authority = url.authority().expect("the URL has a host").clone();
    // HTTP/1.1 requests to a server (not a proxy) carry the path only.
    let path = url.path_and_query().map_or("/", |p| p.as_str()).to_string();
    'reconnect: while Instant::now() < until {
        let Ok(stream) = tokio::net::TcpStream::connect(authority.as_str()).await else {
            outcome.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, driver)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
            outcome.errors += 1;
            continue;
        };
        tokio::spawn(driver);
        while Instant::now() < until {
            let mut request = Request::post(path.as_str())
                .header("host", authority.as_str())
                .header("content-type", content_type.as_str());
            if let Some(authorization) = &authorization {
                request = request.header("authorization", authorization.as_str());
            }
            let request = request
                .body(Full::new(body.clone()))
                .expect("a valid request");
            let started = Instant::now();
            match sender.send_request(request).await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    let read = response.into_body().collect().await.is_ok();
                    if ok && read {
                        outcome.latencies.push(started.elapsed());
                    } else {
                        outcome.errors += 1;
                    }
                }
                Err(_) => {
                    outcome.errors += 1;
                    continue 'reconnect;
                }
            }
        }
    }
    outcome
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: loopline-loadgen URL BODY_FILE CONCURRENCY SECONDS [CONTENT_TYPE]");
        std::process::exit(2);
    }
    let url: hyper::Uri = args[1].parse().expect("a valid URL");
    let body = Bytes::from(std::fs::read(&args[2]).expect("a readable body file"));
    let concurrency: usize = args[3].parse().expect("a number of connections");
    let seconds: f64 = args[4].parse().expect("a duration in seconds");
    let content_type = args.get(5).cloned().unwrap_or_else(|| "application/json".to_string());
    let authorization = std::env::var("LOADGEN_AUTHORIZATION").ok();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(connection(
                url.clone(),
                body.clone(),
                content_type.clone(),
                authorization.clone(),
                until,
            )))
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let outcome = task.await.expect("a connection task does not panic");
        latencies.extend(outcome.latencies);
        errors += outcome.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    let summary = serde_json::json!({
        "requests": latencies.len(),
        "errors": errors,
        "seconds": elapsed,
        "rps": latencies.len() as f64 / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "max_ms": percentile(1.0),
    });
    println!("{summary}");
}
