//! `loopline-loadgen URL BODY_FILE CONCURRENCY SECONDS [CONTENT_TYPE]`: keeps CONCURRENCY HTTP/1.1 keep-alive
//! connections busy for SECONDS, each posting BODY_FILE as soon as its previous answer arrived (a closed loop,
//! so a slow server is measured as slow rather than as a growing backlog). Prints one JSON line: requests,
//! errors, requests per second, and latency percentiles in milliseconds over all answered requests.
//! When answers carry `x-loopline-overhead-ms` (the time a Loopline server spent on a call besides waiting
//! for its upstream), its p50 and p99 are printed too. `LOADGEN_AUTHORIZATION`, when set, is sent as every request's Authorization header.
//!
//! `LOADGEN_RATE=R` makes the loop open instead: requests are scheduled at R per second in all, connection i
//! sending at `start + i/R + k*CONCURRENCY/R`, and each latency is counted from the scheduled instant, so a
//! request that had to wait for its connection counts its wait (no coordinated omission). Choose CONCURRENCY
//! large enough that a connection's answer normally arrives before its next slot.
//!
//! `LOADGEN_TIMELINE=PATH` also writes each answered request's start (seconds from the run's start) and
//! latency (ms), one per line, to see when the slow ones happened (bursts, or spread evenly).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

struct Outcome {
    latencies: Vec<Duration>,
    /// When each answered request started (its slot in an open loop), beside its latency.
    starts: Vec<Instant>,
    /// What the server says it added itself (`x-loopline-overhead-ms`), when it says so.
    overheads: Vec<f64>,
    errors: u64,
}

async fn connection(
    url: hyper::Uri,
    body: Bytes,
    content_type: String,
    authorization: Option<String>,
    until: Instant,
    schedule: Option<(Instant, Duration)>,
) -> Outcome {
    let mut outcome = Outcome {
        latencies: Vec::new(),
        starts: Vec::new(),
        overheads: Vec::new(),
        errors: 0,
    };
    let authority = url.authority().expect("the URL has a host").clone();
    // HTTP/1.1 requests to a server (not a proxy) carry the path only.
    let path = url.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut sent: u32 = 0;
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
            // Open loop: wait for this connection's next slot and count latency from it.
            let slot = schedule.map(|(first, every)| first + every * sent);
            if let Some(slot) = slot {
                if slot >= until {
                    break 'reconnect;
                }
                tokio::time::sleep_until(slot.into()).await;
                sent += 1;
            }
            let mut request = Request::post(path.as_str())
                .header("host", authority.as_str())
                .header("content-type", content_type.as_str());
            if let Some(authorization) = &authorization {
                request = request.header("authorization", authorization.as_str());
            }
            let request = request.body(Full::new(body.clone())).expect("a valid request");
            let started = slot.unwrap_or_else(Instant::now);
            match sender.send_request(request).await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    let overhead = response
                        .headers()
                        .get("x-loopline-overhead-ms")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<f64>().ok());
                    let read = response.into_body().collect().await.is_ok();
                    if ok && read {
                        outcome.latencies.push(started.elapsed());
                        outcome.starts.push(started);
                        outcome.overheads.extend(overhead);
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
    let rate: Option<f64> = std::env::var("LOADGEN_RATE")
        .ok()
        .map(|rate| rate.parse().expect("LOADGEN_RATE is requests per second"));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|index| {
            // Connections start 100 ms in, so every connection is open before the first slot.
            let schedule = rate.map(|rate| {
                let first = started + Duration::from_millis(100) + Duration::from_secs_f64(index as f64 / rate);
                (first, Duration::from_secs_f64(concurrency as f64 / rate))
            });
            tokio::spawn(connection(
                url.clone(),
                body.clone(),
                content_type.clone(),
                authorization.clone(),
                until,
                schedule,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut overheads = Vec::new();
    let mut errors = 0;
    // LOADGEN_TIMELINE=PATH: each answered request's start (seconds from the run's start) and latency
    // (ms), one per line, to see when the slow ones happened.
    let mut timeline = std::env::var("LOADGEN_TIMELINE").ok().map(|path| (path, String::new()));
    for task in tasks {
        let outcome = task.await.expect("a connection task does not panic");
        if let Some((_, text)) = &mut timeline {
            for (start, latency) in outcome.starts.iter().zip(&outcome.latencies) {
                let since = start.saturating_duration_since(started).as_secs_f64();
                text.push_str(&format!("{since:.6} {:.3}\n", latency.as_secs_f64() * 1000.0));
            }
        }
        latencies.extend(outcome.latencies);
        overheads.extend(outcome.overheads);
        errors += outcome.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some((path, text)) = timeline {
        std::fs::write(&path, text).expect("the timeline file can be written");
    }
    latencies.sort();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    overheads.sort_by(f64::total_cmp);
    let overhead = |p: f64| -> Option<f64> {
        let index = ((overheads.len() as f64 * p).ceil() as usize).clamp(1, overheads.len().max(1)) - 1;
        overheads.get(index).copied()
    };
    let summary = serde_json::json!({
        "overhead_p50_ms": overhead(0.50),
        "overhead_p99_ms": overhead(0.99),
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
