//! Scoring one rag job against its labelled question, and the figures of a
//! set of them: retrieval hit@1/hit@k of the answer's page, answer match,
//! cited-page match, defended and false-defended rates, refusals of the
//! unanswerable, cost against always-strong, and time per step and job.

use crate::rag::step_times;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use upshift_shared::stats::quantile;
use upshift_shared::verify::rag::text::contains_span;

/// One labelled question.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Stable id (`a01`, `u03`).
    pub id: String,
    /// `dev` (tune on it), `test` (report only) or `holdout` (written after
    /// the test half had been seen once, report only).
    pub split: String,
    /// What it asks for (`setting`, `default`, … or `unanswerable`).
    pub kind: String,
    /// The question.
    pub question: String,
    /// Accepted answers; empty when the collection does not answer it.
    pub answers: Vec<String>,
    /// Documents (collection ids, e.g. `runtime-config-wal.html`) that hold the answer.
    pub pages: Vec<String>,
}

impl Question {
    /// Whether the collection answers it (the right outcome otherwise is a refusal).
    pub fn answerable(&self) -> bool {
        !self.answers.is_empty()
    }

    /// Whether `text` holds one of the accepted answers, judged without
    /// the passages it cites ([`without_citations`]).
    pub fn accepts(&self, text: &str) -> bool {
        let text = without_citations(text);
        self.answers.iter().any(|a| contains_span(&text, a))
    }
}

/// What one job did with one question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The question's id and split.
    pub id: String,
    /// `dev` or `test`.
    pub split: String,
    /// Whether the collection answers it.
    pub answerable: bool,
    /// The job.
    pub job: String,
    /// `succeeded` (defended), `unresolved` or `failed`.
    pub status: String,
    /// The answer text (the best one, when undefended).
    pub answer: Option<String>,
    /// The span an extractive answer chose.
    pub short_answer: Option<String>,
    /// The short answer (or the answer text) contains an accepted answer.
    pub answer_match: bool,
    /// A page holding the answer was the best passage's document.
    pub hit_at_1: bool,
    /// A page holding the answer was among the retrieved passages' documents.
    pub hit_at_k: bool,
    /// A cited passage is on a page holding the answer.
    pub cited_page: bool,
    /// Spend and what always-strong would have cost.
    pub cost_usd: f64,
    /// Always-strong estimate.
    pub always_strong_cost_usd: f64,
    /// Submit to done, seconds.
    pub job_s: f64,
    /// Wall seconds per step.
    pub step_s: BTreeMap<String, f64>,
    /// Tiers per step (`small→medium`, `zero`).
    pub tiers: BTreeMap<String, String>,
    /// Reason codes of the open findings of an undefended answer.
    pub findings: Vec<String>,
    /// Each model decision of the extraction and the critique.
    pub decisions: Vec<Judged>,
    /// What the retrieve step found (what `--replay` decides from again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<upshift_shared::verify::rag::Retrieval>,
}

/// One model decision of a rag job, with whether what it stood for was right.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Judged {
    /// `extract` or `critique`.
    pub step: String,
    /// The tier it ran on.
    pub tier: String,
    /// What it said: the span chosen, or the verdict.
    pub said: String,
    /// Its confidence.
    pub confidence: Option<f64>,
    /// For an extraction: its span is an accepted answer. For a critique:
    /// the answer it judged (the job's) is right.
    pub right: bool,
    /// Its verifiers found nothing (tier zero: apart from its own gate), so
    /// a confident enough answer would have been accepted.
    pub passed: bool,
}

/// `text` without the passage ids it cites (`[sql-copy.html#2]` holds
/// `COPY`): what an answer is judged on. Only `[<doc>#<n>]` brackets go,
/// so an answer such as `%m [%p]` or `s[i]` is judged whole.
pub fn without_citations(text: &str) -> String {
    static CITED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\[[^\[\]\s]+#\d+(?:\s*[,;]\s*[^\[\]\s]+#\d+)*\]").expect("valid regex")
    });
    CITED.replace_all(text, "").into_owned()
}

/// Scores the finished `job` (with its `route`) against question `q`.
pub fn score(q: &Question, job: &serde_json::Value, route: &serde_json::Value, job_s: f64) -> Record {
    let r = &job["result"];
    let answer = r["answer"].as_str().map(str::to_string);
    let short = r["short_answer"].as_str().map(str::to_string);
    let answer_match = q.accepts(&short.clone().or_else(|| answer.clone()).unwrap_or_default());
    let doc = |pid: &str| pid.split('#').next().unwrap_or_default().to_string();
    let retrieved: Vec<String> = r["retrieved"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(doc))
        .collect();
    let on_page = |d: &String| q.pages.contains(d);
    let cited: Vec<String> = r["citations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["document_id"].as_str().map(str::to_string))
        .collect();
    let mut step_s = BTreeMap::new();
    let mut tiers = BTreeMap::new();
    for (step, t) in step_times(route) {
        step_s.insert(step.clone(), t.wall_s);
        let path = if t.path.is_empty() {
            "zero".to_string()
        } else {
            t.path.join("→")
        };
        tiers.insert(step, path);
    }
    let decisions = route["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| matches!(e["event"].as_str(), Some("accept" | "unresolved" | "escalate")))
        // A model's decision, or the extraction's tier zero (the evidence's own choice).
        .filter(|e| (e["attempt_id"].is_string() && e["from_tier"].is_string()) || e["detail"]["by"] == "rank")
        .filter_map(|e| {
            let step = e["step"].as_str()?;
            let zero = e["detail"]["by"] == "rank";
            let (said, right) = match step {
                "extract" => {
                    let said = e["detail"]["answer"].as_str()?;
                    (said, q.accepts(said))
                }
                "critique" => (e["detail"]["verdict"].as_str()?, q.answerable() && answer_match),
                _ => return None,
            };
            let found = if zero {
                &e["detail"]["span_findings"]
            } else {
                &e["detail"]["findings"]
            };
            Some(Judged {
                passed: found.as_array().is_none_or(Vec::is_empty),
                step: step.to_string(),
                tier: if zero {
                    "zero"
                } else {
                    e["from_tier"].as_str().unwrap_or("?")
                }
                .to_string(),
                said: said.to_string(),
                confidence: if zero {
                    e["detail"]["similarity"].as_f64()
                } else {
                    e["confidence"].as_f64()
                },
                right,
            })
        })
        .collect();
    Record {
        id: q.id.clone(),
        split: q.split.clone(),
        answerable: q.answerable(),
        job: job["id"].as_str().unwrap_or_default().to_string(),
        status: job["status"].as_str().unwrap_or("?").to_string(),
        answer,
        short_answer: short,
        answer_match,
        hit_at_1: retrieved.first().is_some_and(on_page),
        hit_at_k: retrieved.iter().any(on_page),
        cited_page: cited.iter().any(on_page),
        cost_usd: job["cost_usd"].as_f64().unwrap_or(0.0),
        always_strong_cost_usd: job["always_strong_cost_usd"].as_f64().unwrap_or(0.0),
        job_s,
        step_s,
        tiers,
        findings: r["open_findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| Some(format!("{}:{}", f["step"].as_str()?, f["code"].as_str()?)))
            .collect(),
        decisions,
        retrieval: job["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == "retrieve")
            .and_then(|s| s["output"].as_str())
            .and_then(upshift_shared::verify::rag::Retrieval::parse),
    }
}

/// The figures of a set of records (a split, or all).
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Questions.
    pub n: usize,
    /// Of them answerable by the collection.
    pub answerable: usize,
    /// Retrieval: the answer's page ranked first (answerable questions).
    pub hit_at_1: f64,
    /// Retrieval: the answer's page among the retrieved passages.
    pub hit_at_k: f64,
    /// The answer matches an accepted answer (answerable).
    pub answer_match: f64,
    /// A cited passage is on the answer's page (answerable).
    pub cited_page: f64,
    /// Jobs that ended `succeeded`: the system said the answer was defended (all questions).
    pub defended: f64,
    /// Defended answers to answerable questions.
    pub defended_answerable: f64,
    /// Defended and right, over answerable questions.
    pub defended_and_right: f64,
    /// Defended answers that are wrong (or answer an unanswerable question), over defended answers.
    pub false_defended: f64,
    /// Count of those.
    pub false_defended_n: usize,
    /// Unanswerable questions not answered as defended (the right outcome).
    pub refusals: f64,
    /// Jobs that failed outright.
    pub failed: usize,
    /// Spend over always-strong.
    pub cost_ratio: f64,
    /// Total spend.
    pub cost_usd: f64,
    /// p50 and p95 per step and for the job, seconds.
    pub latency: BTreeMap<String, (f64, f64)>,
}

/// Summarises `records`.
pub fn summarise(records: &[&Record]) -> Summary {
    let share = |num: usize, den: usize| if den == 0 { 0.0 } else { num as f64 / den as f64 };
    let ans: Vec<&&Record> = records.iter().filter(|r| r.answerable).collect();
    let un: Vec<&&Record> = records.iter().filter(|r| !r.answerable).collect();
    let count = |rs: &[&&Record], f: &dyn Fn(&Record) -> bool| rs.iter().filter(|r| f(r)).count();
    let defended = |r: &Record| r.status == "succeeded";
    let n_def = records.iter().filter(|r| defended(r)).count();
    let wrong_def = records
        .iter()
        .filter(|r| defended(r) && (!r.answerable || !r.answer_match))
        .count();
    let mut latency = BTreeMap::new();
    let mut steps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in records {
        for (s, t) in &r.step_s {
            steps.entry(s).or_default().push(*t);
        }
        steps.entry("job").or_default().push(r.job_s);
    }
    for (s, mut xs) in steps {
        latency.insert(s.to_string(), (quantile(&mut xs, 0.5), quantile(&mut xs, 0.95)));
    }
    let (cost, strong): (f64, f64) = records
        .iter()
        .fold((0.0, 0.0), |(c, s), r| (c + r.cost_usd, s + r.always_strong_cost_usd));
    Summary {
        n: records.len(),
        answerable: ans.len(),
        hit_at_1: share(count(&ans, &|r| r.hit_at_1), ans.len()),
        hit_at_k: share(count(&ans, &|r| r.hit_at_k), ans.len()),
        answer_match: share(count(&ans, &|r| r.answer_match), ans.len()),
        cited_page: share(count(&ans, &|r| r.cited_page), ans.len()),
        defended: share(n_def, records.len()),
        defended_answerable: share(count(&ans, &defended), ans.len()),
        defended_and_right: share(count(&ans, &|r| defended(r) && r.answer_match), ans.len()),
        false_defended: share(wrong_def, n_def),
        false_defended_n: wrong_def,
        refusals: share(count(&un, &|r| !defended(r)), un.len()),
        failed: records.iter().filter(|r| r.status == "failed").count(),
        cost_ratio: if strong > 0.0 { cost / strong } else { 0.0 },
        cost_usd: cost,
        latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_is_judged_without_the_passages_it_cites() {
        assert_eq!(without_citations("Use COPY. [sql-copy.html#2]"), "Use COPY. ");
        assert_eq!(without_citations("`%m [%p]` [a.html#1; b.html#3]"), "`%m [%p]` ");
        assert_eq!(without_citations("s[i] and [default: 3]"), "s[i] and [default: 3]");
    }

    fn question(answers: &[&str]) -> Question {
        Question {
            id: "a01".into(),
            split: "dev".into(),
            kind: "setting".into(),
            question: "Which setting controls how much is written to the WAL?".into(),
            answers: answers.iter().map(|a| a.to_string()).collect(),
            pages: vec!["runtime-config-wal.html".into()],
        }
    }

    #[test]
    fn a_defended_wrong_answer_counts_as_false_defended() {
        let job = |status: &str, short: &str| {
            json!({"id": "j", "status": status, "cost_usd": 1.0, "always_strong_cost_usd": 4.0, "result": {
                "answer": format!("{short} — it is written [runtime-config-wal.html#1]"), "short_answer": short,
                "retrieved": ["other.html#0", "runtime-config-wal.html#1"],
                "citations": [{"document_id": "runtime-config-wal.html"}], "open_findings": []}})
        };
        let route = json!({"events": []});
        let right = score(&question(&["wal_level"]), &job("succeeded", "wal_level"), &route, 2.0);
        assert!(right.answer_match && right.hit_at_k && !right.hit_at_1 && right.cited_page);
        let wrong = score(&question(&["wal_level"]), &job("succeeded", "fsync"), &route, 4.0);
        assert!(!wrong.answer_match, "the short answer decides, not the sentence");
        let refused = score(&question(&[]), &job("unresolved", "fsync"), &route, 1.0);
        let s = summarise(&[&right, &wrong, &refused]);
        assert_eq!((s.n, s.answerable, s.false_defended_n), (3, 2, 1));
        assert!((s.false_defended - 0.5).abs() < 1e-9 && (s.refusals - 1.0).abs() < 1e-9);
        assert!((s.cost_ratio - 0.25).abs() < 1e-9);
        assert_eq!(s.latency["job"], (2.0, 4.0));
    }
}
