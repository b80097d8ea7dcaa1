//! The route viewer: server-rendered HTML with inline CSS, no scripts and no
//! external assets, so it works offline. Pages are tenant-scoped like the API.
//!
//! - `/ui` — the tenant's jobs, filterable by status and age;
//! - `/ui/jobs/{id}` — a job's route: one row per step, one box per attempt
//!   coloured by tier, arrows labelled with the escalation reasons, cost and
//!   latency per attempt, and the answer; a RAG job's evidence (the
//!   passages, tier zero's score, threshold and features) as tables
//!   ([`evidence`]);
//! - `/ui/summary` — spend against always-strong, and escalations by reason.

mod evidence;

use super::{ApiError, AppState, Tenant};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Html;
use serde::Deserialize;
use std::fmt::Write;
use upshift_shared::{JobStatus, RouteEventKind};
use uuid::Uuid;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222}a{color:#1f5fbf}
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
.step{display:flex;align-items:center;gap:6px;margin:14px 0}.name{width:120px;font-weight:600}
.box{border-radius:6px;padding:6px 10px;min-width:150px;color:#111}.tier-zero{background:#e4e4e4}.tier-small{background:#c9f0d0}
.tier-medium{background:#ffe2a8}.tier-strong{background:#f7b9b3}.arrow{font-size:12px;color:#555;text-align:center}
.arrow b{display:block;font-size:20px;color:#333}pre{white-space:pre-wrap;background:#f6f6f6;padding:10px}
nav a{margin-right:14px}.undefended{border:2px solid #c0392b;padding:8px;color:#7b241c}
.evidence{border-left:4px solid #9db4d6;padding:6px 12px;margin:6px 0 6px 126px;background:#f7f9fc}
.evidence table{margin-top:6px;font-size:13px}";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — upshift</title><style>{STYLE}</style></head>\
         <body><nav><a href=\"/ui\">jobs</a><a href=\"/ui/summary\">summary</a></nav><h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    ))
}

/// Filters of the job list.
#[derive(Debug, Deserialize)]
pub struct ListFilter {
    status: Option<String>,
    /// Only jobs created in the last this many hours.
    hours: Option<u32>,
}

/// `/ui`: the job list.
pub async fn jobs(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    q: Result<Query<ListFilter>, QueryRejection>,
) -> Result<Html<String>, ApiError> {
    let Query(q) = q?;
    let status = q.status.and_then(|s| s.parse::<JobStatus>().ok());
    let hours = f64::from(q.hours.unwrap_or(24 * 365).clamp(1, 24 * 3650));
    let rows = st.store.job_list(&tenant, status, hours as i32).await?;
    let options: String = JobStatus::ALL.iter().map(|s| format!("<option>{s}</option>")).collect();
    let mut body = format!(
        "<form method=\"get\">status <select name=\"status\"><option value=\"\">any</option>{options}</select> \
         created in the last <input name=\"hours\" size=\"4\" placeholder=\"hours\"> h <button>filter</button></form>",
    );
    let _ = write!(
        body,
        "<p>tenant <b>{}</b>, {} job(s)</p><table><tr><th>job</th><th>status</th><th>attempts</th><th>cost $</th><th>always-strong $</th><th>created</th></tr>",
        esc(&tenant),
        rows.len()
    );
    for (id, status, cost, strong, created, attempts) in rows {
        let _ = write!(
            body,
            "<tr><td><a href=\"/ui/jobs/{id}\">{id}</a></td><td>{}</td><td>{attempts}</td><td>{cost:.6}</td><td>{strong:.6}</td><td>{}</td></tr>",
            esc(&status),
            created.format("%Y-%m-%d %H:%M:%S")
        );
    }
    body.push_str("</table>");
    Ok(page("Jobs", &body))
}

/// `/ui/jobs/{id}`: the route drawing.
pub async fn job(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Html<String>, ApiError> {
    let Path(id) = id?;
    let job = st.store.job(&tenant, id).await?;
    let events = st.store.route(&tenant, id).await?;
    let mut body = format!(
        "<p>status <b>{}</b> · blast radius {} · cost ${:.6} · always-strong ${:.6}</p>",
        job.status,
        esc(&job.blast_radius),
        job.cost_usd,
        job.always_strong_cost_usd
    );
    if job.status == JobStatus::Unresolved {
        let why: Vec<String> = job
            .steps
            .iter()
            .flat_map(|s| s.open_findings.as_array().cloned().unwrap_or_default())
            .filter_map(|f| {
                Some(format!(
                    "{}: {}",
                    f["code"].as_str()?,
                    f["detail"].as_str().unwrap_or("")
                ))
            })
            .collect();
        let _ = write!(
            body,
            "<p class=\"undefended\"><b>Undefended answer.</b> No tier could defend it: {}</p>",
            esc(&why.join("; "))
        );
    }
    for step in &job.steps {
        let _ = write!(
            body,
            "<div class=\"step\"><div class=\"name\">{}<br><small>{}</small></div>",
            esc(&step.name),
            esc(&step.task)
        );
        let mut judgements = Vec::new();
        let decisions = events.iter().filter(|e| {
            e.step.as_deref() == Some(step.name.as_str())
                && (e.event.is_decision() || e.event == RouteEventKind::LateResult)
        });
        for (i, e) in decisions.enumerate() {
            judgements.extend(evidence::judgement(&e.detail, &step.labels));
            if i > 0 {
                body.push_str("<div class=\"arrow\">&nbsp;</div>");
            }
            // A step done without a model (a search, a composed answer) is tier zero.
            let tier = e.from_tier.as_deref().unwrap_or("zero");
            let _ = write!(
                body,
                "<div class=\"box tier-{t}\"><b>{t}</b> · {model}<br>{event}{reasons}<br>${cost:.6} · {ms} ms</div>",
                t = esc(tier),
                model = esc(e.model.as_deref().or(e.detail["by"].as_str()).unwrap_or("")),
                event = e.event,
                reasons = if matches!(e.event, RouteEventKind::Accept | RouteEventKind::Unresolved)
                    && !e.reasons.is_empty()
                {
                    format!(" (open: {})", esc(&e.reasons.join(", ")))
                } else {
                    String::new()
                },
                cost = e.cost_usd.unwrap_or(0.0),
                ms = e.latency_ms.unwrap_or(0),
            );
            if e.event == RouteEventKind::Escalate {
                let _ = write!(
                    body,
                    "<div class=\"arrow\"><b>→</b>{}</div>",
                    esc(&e.reasons.join(", "))
                );
            }
        }
        body.push_str("</div>");
        body.push_str(&judgements.concat());
        match step.output.as_deref().map(|out| (out, evidence::retrieval(out))) {
            Some((_, Some(passages))) => body.push_str(&passages),
            Some((out, None)) => {
                let _ = write!(body, "<pre>{}</pre>", esc(out));
            }
            None => {}
        }
    }
    Ok(page(&format!("Job {id}"), &body))
}

/// `/ui/summary`: spend and escalations of the tenant.
pub async fn summary(State(st): State<AppState>, Tenant(tenant): Tenant) -> Result<Html<String>, ApiError> {
    let spend = st.store.spend_by_day(&tenant).await?;
    let reasons = st.store.escalations_by_reason(&tenant).await?;
    let mut body = String::from(
        "<h2>Spend vs always-strong</h2><table><tr><th>day</th><th>jobs</th><th>cost $</th><th>always-strong $</th><th>ratio</th></tr>",
    );
    for (day, jobs, cost, strong) in spend {
        let (c, s) = (cost.unwrap_or(0.0), strong.unwrap_or(0.0));
        let ratio = if s > 0.0 { format!("{:.3}", c / s) } else { "-".into() };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{jobs}</td><td>{c:.6}</td><td>{s:.6}</td><td>{ratio}</td></tr>",
            day.format("%Y-%m-%d")
        );
    }
    body.push_str(
        "</table><h2>Escalations by reason</h2><table><tr><th>reason</th><th>task type</th><th>escalations</th></tr>",
    );
    for (reason, task, n) in reasons {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
            esc(&reason),
            esc(&task)
        );
    }
    body.push_str("</table>");
    Ok(page("Summary", &body))
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
