//! A small HTTP client for the orchestrator API, and the route table printer.

use anyhow::{Context, bail};
use std::time::Duration;
use uuid::Uuid;

/// Talks to one orchestrator.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, key: Option<&str>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            key: key.map(str::to_string),
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn json(resp: reqwest::Response) -> anyhow::Result<serde_json::Value> {
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.context("reading the response")?;
        if !status.is_success() {
            bail!(
                "{status}: {}",
                body["error"]["message"].as_str().unwrap_or("unknown error")
            );
        }
        Ok(body)
    }

    /// Submits a job; returns its id. A 429 (the tenant's submit rate or
    /// jobs in flight at their limit) is retried after its Retry-After (at
    /// most 30 s each), for at most 10 minutes in all.
    pub async fn submit(&self, body: &serde_json::Value) -> anyhow::Result<Uuid> {
        let give_up = std::time::Instant::now() + Duration::from_secs(600);
        loop {
            let resp = self
                .req(reqwest::Method::POST, "/v1/jobs")
                .json(body)
                .send()
                .await
                .context("POST /v1/jobs")?;
            if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS && std::time::Instant::now() < give_up {
                let wait = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, 30);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let v = Self::json(resp).await?;
            return Ok(v["id"].as_str().context("no id in response")?.parse()?);
        }
    }

    /// Posts a JSON body to `path`; returns the status and the JSON answer.
    pub async fn post_status(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<(u16, serde_json::Value)> {
        let resp = self
            .req(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(serde_json::Value::Null)))
    }

    /// GETs `path` with query parameters.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<serde_json::Value> {
        Self::json(self.req(reqwest::Method::GET, path).query(query).send().await?).await
    }

    /// The job's status document.
    pub async fn job(&self, id: Uuid) -> anyhow::Result<serde_json::Value> {
        Self::json(self.req(reqwest::Method::GET, &format!("/v1/jobs/{id}")).send().await?).await
    }

    /// The job's route.
    pub async fn route(&self, id: Uuid) -> anyhow::Result<serde_json::Value> {
        Self::json(
            self.req(reqwest::Method::GET, &format!("/v1/jobs/{id}/route"))
                .send()
                .await?,
        )
        .await
    }

    /// Waits until the job is finished and returns its status document.
    /// With `progress`, prints each route event as it happens, from the
    /// job's server-sent event stream (`GET /v1/jobs/{id}/events`).
    pub async fn wait(&self, id: Uuid, progress: bool) -> anyhow::Result<serde_json::Value> {
        let path = format!("/v1/jobs/{id}/events");
        let (mut last_id, mut reconnects) = (None::<String>, 0);
        loop {
            let mut req = self
                .http
                .request(reqwest::Method::GET, format!("{}{path}", self.base))
                .timeout(Duration::from_secs(24 * 3600))
                .header("accept", "text/event-stream");
            if let Some(k) = &self.key {
                req = req.bearer_auth(k);
            }
            if let Some(l) = &last_id {
                req = req.header("last-event-id", l.as_str());
            }
            let mut resp = req.send().await.with_context(|| format!("GET {path}"))?;
            if !resp.status().is_success() {
                return Self::json(resp).await;
            }
            let (mut buf, mut name, mut data, mut event_id) = (String::new(), String::new(), String::new(), None);
            while let Some(chunk) = resp.chunk().await.context("reading the event stream")? {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(nl) = buf.find('\n') {
                    let line = buf[..nl].trim_end_matches('\r').to_string();
                    buf.drain(..=nl);
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event_id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    } else if line.is_empty() && !data.is_empty() {
                        let e: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                        if name == "done" {
                            return self.job(id).await;
                        }
                        if progress {
                            println!("{}", crate::client::event_line(&e));
                        }
                        last_id = event_id.take().or(last_id);
                        data.clear();
                    }
                }
            }
            // The stream ended early (its lifetime, a proxy, a restart): resume
            // after the last event while the job runs, a bounded number of times.
            let job = self.job(id).await?;
            reconnects += 1;
            if job["status"] != "running" || reconnects > 100 {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The tiers a route event moved between: `small→medium`, `small`, `→medium`.
pub fn tier_move(e: &serde_json::Value) -> String {
    match (e["from_tier"].as_str(), e["to_tier"].as_str()) {
        (Some(f), Some(t)) => format!("{f}→{t}"),
        (Some(f), None) => f.to_string(),
        (None, Some(t)) => format!("→{t}"),
        _ => String::new(),
    }
}

/// A route event's reason codes.
pub fn reasons(e: &serde_json::Value) -> Vec<&str> {
    e["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect()
}

/// One route event as a line: `12:00:01.123 solve escalate small→medium low_confidence`.
pub fn event_line(e: &serde_json::Value) -> String {
    let (tiers, reasons) = (tier_move(e), reasons(e));
    format!(
        "{} {} {} {} {}",
        e["at"].as_str().and_then(|t| t.get(11..23)).unwrap_or(""),
        e["step"].as_str().unwrap_or("-"),
        e["event"].as_str().unwrap_or("?"),
        tiers,
        reasons.join(",")
    )
    .trim_end()
    .to_string()
}

impl Client {
    /// Prints the job's route events as they appear, until the job is finished.
    pub async fn watch(&self, id: Uuid, json: bool) -> anyhow::Result<()> {
        let mut shown = 0;
        loop {
            let route = self.route(id).await?;
            let events = route["events"].as_array().cloned().unwrap_or_default();
            if events.len() > shown {
                if json {
                    for e in &events[shown..] {
                        println!("{}", serde_json::to_string(e)?);
                    }
                } else {
                    let table = route_table(&serde_json::json!({ "events": events }), true);
                    let rows: Vec<&str> = table.lines().collect();
                    // Row 0 is the header; print it once, then only new rows.
                    let from = if shown == 0 { 0 } else { shown + 1 };
                    for r in &rows[from..] {
                        println!("{r}");
                    }
                }
                shown = events.len();
            }
            let job = self.job(id).await?;
            if job["status"] != "running" {
                if !json {
                    println!(
                        "job {id} {}: cost ${:.6}",
                        job["status"].as_str().unwrap_or("?"),
                        job["cost_usd"].as_f64().unwrap_or(0.0)
                    );
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Renders a route document as an aligned table (`fixed`: constant column widths).
pub fn route_table(route: &serde_json::Value, fixed: bool) -> String {
    let mut rows = vec![
        ["time", "step", "event", "tiers", "model", "cost $", "ms", "reasons"]
            .map(String::from)
            .to_vec(),
    ];
    for e in route["events"].as_array().into_iter().flatten() {
        let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
        let tiers = tier_move(e);
        let time = s("at").get(11..23).unwrap_or("").to_string();
        // Figures belong to the decision rows, not to start/dispatch.
        let decided = !matches!(e["event"].as_str(), Some("start" | "dispatch"));
        let reasons = reasons(e);
        rows.push(vec![
            time,
            s("step"),
            s("event"),
            tiers,
            s("model"),
            e["cost_usd"]
                .as_f64()
                .filter(|_| decided)
                .map(|c| format!("{c:.6}"))
                .unwrap_or_default(),
            e["latency_ms"]
                .as_i64()
                .filter(|_| decided)
                .map(|l| l.to_string())
                .unwrap_or_default(),
            reasons.join(","),
        ]);
    }
    // Fixed widths when following a job live, so later rows line up with the header.
    const LIVE: [usize; 8] = [12, 10, 11, 14, 14, 10, 6, 0];
    crate::table::render(&rows, fixed.then_some(&LIVE[..]))
}
