//! What a sidecar serves, read the way Prometheus and the kubelet read it:
//! `/metrics`, `/readyz`, `/healthz` over HTTP, samples summed by labels,
//! metric families with their types and label keys.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

/// GET a sidecar path: (status, body); (0, the error) while nothing answers.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    match reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// GET `path` from `addr` (`IP:PORT`) without a runtime, for tests that
/// drive processes from plain threads: (status, body).
pub fn http_get_blocking(addr: &str, path: &str) -> (u16, String) {
    let s = std::net::TcpStream::connect(addr).expect("connect to the sidecar");
    exchange(s, path, Duration::from_secs(5))
}

/// Like [`http_get_blocking`], for a sidecar that may not answer (a service
/// busy or gone): (0, "") when nothing connects or answers within `within`.
pub fn http_probe_blocking(addr: &str, path: &str, within: Duration) -> (u16, String) {
    match std::net::TcpStream::connect(addr) {
        Ok(s) => exchange(s, path, within),
        Err(_) => (0, String::new()),
    }
}

/// One HTTP/1.1 GET on `s`, reading the answer for at most `within`.
fn exchange(mut s: std::net::TcpStream, path: &str, within: Duration) -> (u16, String) {
    s.set_read_timeout(Some(within)).ok();
    if s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_owned())
}

/// Polls `path` until `pred(status, body)` holds; returns the last answer
/// and whether it held.
pub async fn poll_until(
    addr: SocketAddr,
    path: &str,
    within: Duration,
    pred: impl Fn(u16, &str) -> bool,
) -> ((u16, String), bool) {
    let deadline = Instant::now() + within;
    loop {
        let got = http_get(addr, path).await;
        if pred(got.0, &got.1) {
            return (got, true);
        }
        if Instant::now() > deadline {
            return (got, false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of metric `name`'s samples (Prometheus text) whose label text
/// contains every one of `labels` (e.g. `topic="t"`); `None` when there is
/// no such sample.
pub fn metric(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let samples: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// [`metric`], 0 when there is no such sample.
pub fn sum(body: &str, name: &str, labels: &[&str]) -> f64 {
    metric(body, name, labels).unwrap_or(0.0)
}

/// A consumer's `kafka_consumer_records_consumed_total` for `topic`,
/// summed over partitions.
pub async fn consumed(addr: SocketAddr, topic: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").await;
    sum(
        &body,
        "kafka_consumer_records_consumed_total",
        &[&format!("topic=\"{topic}\"")],
    ) as u64
}

/// [`consumed`], polled until it reaches `want` or `within` passes.
pub async fn wait_consumed(addr: SocketAddr, topic: &str, want: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let n = consumed(addr, topic).await;
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Metric families of a Prometheus text body: name → (type, label keys of
/// its samples; a histogram's `le` left out).
pub fn families(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                out.entry(name.to_owned()).or_default().0 = kind.to_owned();
            }
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| out.get(*f).is_some_and(|(k, _)| k == "histogram"))
            })
            .unwrap_or(name);
        let keys: BTreeSet<String> = labels
            .split("\",")
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim().to_owned()))
            .filter(|k| k != "le" && !k.is_empty())
            .collect();
        out.entry(family.to_owned()).or_default().1.extend(keys);
    }
    out
}

/// Collects every `/metrics`, `/readyz` and `/healthz` body a sidecar serves
/// until stopped: what a scraper or a probe would ever see.
#[derive(Debug)]
pub struct Scraper {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<String>,
}

impl Scraper {
    /// Starts scraping `addr` every 100 ms.
    pub fn start(addr: SocketAddr) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen = String::new();
            loop {
                for path in ["/metrics", "/readyz", "/healthz"] {
                    let (status, body) = http_get(addr, path).await;
                    if status != 0 {
                        seen.push_str(&format!("--- {path} {status}\n{body}\n"));
                    }
                }
                tokio::select! {
                    () = token.cancelled() => return seen,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
        Self { stop, task }
    }

    /// Stops and returns everything seen.
    pub async fn finish(self) -> String {
        self.stop.cancel();
        self.task.await.expect("scraper")
    }
}

/// name → (type, label keys) of the metric table in the README section
/// that starts with the line `heading` (e.g. `## Metrics`), up to the
/// next `## ` section.
pub fn readme_metric_table(heading: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let readme =
        std::fs::read_to_string(crate::broker::repo_root().join("README.md")).expect("README.md");
    let section = readme
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README.md has no {heading:?} section"));
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let kind = cells[2].to_owned();
            let labels = cells[3]
                .split(',')
                .map(|x| x.trim().trim_matches('`').to_owned())
                .filter(|x| !x.is_empty())
                .collect();
            (name, (kind, labels))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "\
# TYPE kafka_x_total counter
kafka_x_total{topic=\"a\",partition=\"0\"} 2
kafka_x_total{topic=\"a\",partition=\"1\"} 3
kafka_x_total{topic=\"b\",partition=\"0\"} 7
kafka_x_total_other 100
# TYPE kafka_lat_seconds histogram
kafka_lat_seconds_bucket{topic=\"a\",le=\"0.5\"} 1
kafka_lat_seconds_sum{topic=\"a\"} 0.1
kafka_lat_seconds_count{topic=\"a\"} 1
";

    #[test]
    fn sums_samples_by_label_and_not_by_prefix() {
        assert_eq!(sum(BODY, "kafka_x_total", &["topic=\"a\""]), 5.0);
        assert_eq!(sum(BODY, "kafka_x_total", &[]), 12.0);
        assert_eq!(sum(BODY, "kafka_missing", &[]), 0.0);
        assert_eq!(metric(BODY, "kafka_missing", &[]), None);
        assert_eq!(metric(BODY, "kafka_x_total", &["topic=\"b\""]), Some(7.0));
    }

    #[test]
    fn families_have_types_and_label_keys() {
        let f = families(BODY);
        assert_eq!(
            f["kafka_x_total"],
            (
                "counter".to_owned(),
                ["partition", "topic"].map(str::to_owned).into()
            )
        );
        assert_eq!(
            f["kafka_lat_seconds"],
            ("histogram".to_owned(), ["topic"].map(str::to_owned).into())
        );
        assert!(!f.contains_key("kafka_lat_seconds_bucket"));
    }
}
