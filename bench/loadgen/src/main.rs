//! `concord-loadgen --url URL [--header 'Authorization: token T'] [--method GET|PUT]
//! [--body-file F] --concurrency N --seconds S`: sends requests from N concurrent
//! keep-alive clients for S seconds (after a short warm-up) and prints one JSON line with
//! the request count, errors, requests per second and latency percentiles.

use clap::Parser;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// The URL to request.
    #[arg(long)]
    url: String,
    /// Extra request headers, `Name: value`.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// A file whose content is sent as the body.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Stop after this many requests in total (0: only the time limit).
    #[arg(long, default_value_t = 0)]
    max_requests: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut headers = reqwest::header::HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("header {h:?} is not `Name: value`"))?;
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())?,
            value.trim().parse()?,
        );
    }
    let body = match &args.body_file {
        Some(p) => Some(std::fs::read(p)?),
        None => None,
    };
    let method: reqwest::Method = args.method.parse()?;
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .build()?;

    let warm_end = Instant::now() + Duration::from_secs_f64(args.warmup);
    let end = warm_end + Duration::from_secs_f64(args.seconds);
    let per_client_cap = if args.max_requests == 0 {
        usize::MAX
    } else {
        args.max_requests.div_ceil(args.concurrency)
    };
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, method, body) = (
            client.clone(),
            args.url.clone(),
            method.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let start = Instant::now();
                if start >= end || latencies.len() + errors >= per_client_cap {
                    break;
                }
                let mut req = client.request(method.clone(), &url);
                if let Some(b) = &body {
                    req = req.body(b.clone());
                }
                let ok = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        resp.bytes().await.is_ok() && status.is_success()
                    }
                    Err(_) => false,
                };
                if start < warm_end {
                    continue;
                }
                if ok {
                    latencies.push(start.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let measured = if args.max_requests > 0 {
        // Ended by count: the wall time is the sum over one client's requests at best;
        // use total latency / concurrency as the measured span.
        latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / args.concurrency as f64
    } else {
        args.seconds
    };
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "{}",
        serde_json::json!({
            "requests": latencies.len(),
            "errors": errors,
            "rps": latencies.len() as f64 / measured.max(1e-9),
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
        })
    );
    Ok(())
}
