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

    /// Submits a job; returns its id.
    pub async fn submit(&self, body: &serde_json::Value) -> anyhow::Result<Uuid> {
        let resp = self
            .req(reqwest::Method::POST, "/v1/jobs")
            .json(body)
            .send()
            .await
            .context("POST /v1/jobs")?;
        let v = Self::json(resp).await?;
        Ok(v["id"].as_str().context("no id in response")?.parse()?)
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

    /// Polls until the job is finished; prints step changes when `progress`.
    pub async fn wait(&self, id: Uuid, progress: bool) -> anyhow::Result<serde_json::Value> {
        let mut last = String::new();
        loop {
            let job = self.job(id).await?;
            let line: Vec<String> = job["steps"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .map(|s| {
                            format!(
                                "{}={}@{}",
                                s["name"].as_str().unwrap_or("?"),
                                s["state"].as_str().unwrap_or("?"),
                                s["tier"].as_str().unwrap_or("-")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let line = format!("{}: {}", job["status"].as_str().unwrap_or("?"), line.join(" "));
            if progress && line != last {
                eprintln!("  {line}");
                last = line;
            }
            if job["status"] != "running" {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
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
        let tiers = match (e["from_tier"].as_str(), e["to_tier"].as_str()) {
            (Some(f), Some(t)) => format!("{f}→{t}"),
            (Some(f), None) => f.to_string(),
            (None, Some(t)) => format!("→{t}"),
            _ => String::new(),
        };
        let time = s("at").get(11..23).unwrap_or("").to_string();
        // Figures belong to the decision rows, not to start/dispatch.
        let decided = !matches!(e["event"].as_str(), Some("start" | "dispatch"));
        let reasons: Vec<&str> = e["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
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
