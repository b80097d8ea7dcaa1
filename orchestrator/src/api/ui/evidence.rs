//! A RAG job's evidence as a person reads it: the passages the search
//! found (title, page, scores, a snippet) instead of the retrieve step's
//! JSON, and tier zero's judgement of the answer — its score against the
//! threshold and the bound that threshold was fitted to, the features that
//! moved the score most, and the candidates it chose among.

use super::esc;
use std::fmt::Write;
use upshift_shared::verify::rag::Retrieval;

/// Characters of a passage shown in the table.
const SNIPPET: usize = 240;
/// Sentences shown under the passages (the ones closest to the question).
const SENTENCES: usize = 5;
/// Features listed under a judgement (the ones that moved the score most).
const FEATURES: usize = 8;

/// The passages of a retrieve step's `output`, as a table; `None` when the
/// output is not a retrieval.
pub(super) fn retrieval(output: &str) -> Option<String> {
    let r = Retrieval::parse(output)?;
    let mut html = format!(
        "<div class=\"evidence\"><b>Passages</b> · {} found, {} looked up as definitions, {} search for <q>{}</q>\
         <table><tr><th>#</th><th>title</th><th>page</th><th>score</th><th>full-text</th><th>similarity</th><th>passage</th></tr>",
        r.results().count(),
        r.definitions().count(),
        esc(&r.mode),
        esc(&r.terms)
    );
    for (i, p) in r.passages.iter().enumerate() {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            match &p.defines {
                // Not a search result: fetched as the definition of a name the results mention.
                Some(name) => format!("{} (defines <code>{}</code>)", esc(&p.title), esc(name)),
                None => esc(&p.title),
            },
            esc(&p.document_id),
            p.score,
            opt(p.lexical),
            opt(p.similarity),
            esc(&snippet(&p.text, SNIPPET))
        );
    }
    html.push_str("</table>");
    if !r.sentences.is_empty() {
        html.push_str("<p>Sentences closest to the question:</p><ol>");
        for s in r.sentences.iter().take(SENTENCES) {
            let _ = write!(
                html,
                "<li>{:.3} · {} <small>({})</small></li>",
                s.similarity,
                esc(&snippet(&s.text, SNIPPET)),
                esc(&s.passage_id)
            );
        }
        html.push_str("</ol>");
    }
    html.push_str("</div>");
    Some(html)
}

/// Tier zero's judgement recorded in a decision's `detail` (`by = rank`),
/// with the step's candidate spans; `None` for any other decision.
pub(super) fn judgement(detail: &serde_json::Value, candidates: &[String]) -> Option<String> {
    if detail["by"] != "rank" {
        return None;
    }
    let score = detail["score"].as_f64();
    let threshold = detail["threshold"].as_f64();
    let verdict = match (score, threshold) {
        (Some(s), Some(t)) if s >= t => "at or above the threshold: defended by the evidence alone",
        (Some(_), Some(t)) if t > 1.0 => "the threshold is above 1: the fit found none that keeps its bound",
        (Some(_), Some(_)) => "below the threshold: not defended by the evidence alone",
        _ => "no score (the answer failed a hard check first)",
    };
    let mut html = format!(
        "<div class=\"evidence\"><b>Tier zero's judgement</b> of <q>{}</q><br>score <b>{}</b> against threshold <b>{}</b>: {verdict}",
        esc(detail["answer"].as_str().unwrap_or("")),
        opt(score),
        opt(threshold),
    );
    if let Some(fitted) = detail["fitted"].as_str().filter(|f| !f.is_empty()) {
        let _ = write!(html, "<br><small>threshold fitted {}</small>", esc(fitted));
    }
    let _ = write!(
        html,
        "<br>sentence similarity {} · margin over the best rival {}",
        opt(detail["similarity"].as_f64()),
        opt(detail["margin"].as_f64())
    );
    if let Some(findings) = detail["span_findings"].as_array().filter(|f| !f.is_empty()) {
        let text: Vec<String> = findings
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f["code"].as_str().unwrap_or("?"),
                    f["detail"].as_str().unwrap_or("")
                )
            })
            .collect();
        let _ = write!(html, "<br>hard checks: {}", esc(&text.join("; ")));
    }
    if let Some(rows) = top_features(detail) {
        html.push_str(&rows);
    }
    if !candidates.is_empty() {
        // Each candidate's score, in tier zero's order, when it recorded them.
        let scores = detail["scores"].as_array();
        let list: Vec<String> = candidates
            .iter()
            .enumerate()
            .map(
                |(i, c)| match scores.and_then(|s| s.get(i)).and_then(serde_json::Value::as_f64) {
                    Some(s) => format!("<code>{}</code> {s:.3}", esc(c)),
                    None => format!("<code>{}</code>", esc(c)),
                },
            )
            .collect();
        let with = if scores.is_some() { ", with their scores" } else { "" };
        let _ = write!(
            html,
            "<p>candidates ({}, in tier zero's order{with}): {}</p>",
            candidates.len(),
            list.join(" · ")
        );
    }
    html.push_str("</div>");
    Some(html)
}

/// The features that moved the score most (by the size of what they
/// added to its log-odds), as a table of value and contribution.
fn top_features(detail: &serde_json::Value) -> Option<String> {
    let features = detail["features"].as_object()?;
    let added = detail["contributions"].as_object();
    let mut rows: Vec<(&String, f64, Option<f64>)> = features
        .iter()
        .map(|(name, v)| {
            let c = added.and_then(|a| a.get(name)).and_then(|c| c.as_f64());
            (name, v.as_f64().unwrap_or(0.0), c)
        })
        .collect();
    rows.sort_by(|a, b| {
        let size = |c: Option<f64>| c.map_or(0.0, f64::abs);
        size(b.2).total_cmp(&size(a.2))
    });
    let mut html = String::from("<table><tr><th>feature</th><th>value</th><th>adds to log-odds</th></tr>");
    for (name, v, c) in rows.into_iter().take(FEATURES) {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{v:.3}</td><td>{}</td></tr>",
            esc(name),
            c.map_or("-".into(), |c| format!("{c:+.3}"))
        );
    }
    if let Some(bias) = added.and_then(|a| a.get("bias")).and_then(|b| b.as_f64()) {
        let _ = write!(html, "<tr><td><i>intercept</i></td><td></td><td>{bias:+.3}</td></tr>");
    }
    html.push_str("</table>");
    Some(html)
}

fn opt<T: Into<f64>>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| format!("{:.3}", v.into()))
}

/// The first `max` characters of `text` (on a character boundary), with an
/// ellipsis when cut.
fn snippet(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_judgement_shows_the_score_the_bound_and_what_decided() {
        let detail = serde_json::json!({
            "by": "rank", "answer": "max_widgets", "score": 0.41, "threshold": 1.01,
            "fitted": "on 494 questions, no threshold keeps false-defended ≤ 5% at 90% confidence",
            "similarity": 0.8, "margin": 0.1,
            "features": {"similarity": 0.8, "defined": 1.0, "rank": 0.0},
            "contributions": {"similarity": 2.4, "defined": -0.5, "rank": 0.0, "bias": -1.0},
            "scores": [0.41, 0.2],
        });
        let html = judgement(&detail, &["max_widgets".into(), "<gadget_timeout>".into()]).unwrap();
        assert!(
            html.contains("score <b>0.410</b> against threshold <b>1.010</b>"),
            "{html}"
        );
        assert!(html.contains("the fit found none"), "{html}");
        assert!(html.contains("no threshold keeps false-defended"), "{html}");
        let (sim, def) = (html.find(">similarity<").unwrap(), html.find(">defined<").unwrap());
        assert!(sim < def, "the largest contribution first: {html}");
        assert!(html.contains("+2.400") && html.contains("-1.000"), "{html}");
        assert!(
            html.contains("&lt;gadget_timeout&gt;</code> 0.200"),
            "candidates escaped, with scores: {html}"
        );
        assert!(judgement(&serde_json::json!({"by": "compose"}), &[]).is_none());
    }

    #[test]
    fn a_retrieval_is_a_table_and_anything_else_is_not() {
        let output = serde_json::json!({
            "terms": "how many widgets", "mode": "hybrid",
            "passages": [{"passage_id": "w.html#0", "document_id": "w.html", "title": "Widget <limits>",
                          "score": 0.5, "text": "x".repeat(300), "similarity": 0.7}],
            "sentences": [{"passage_id": "w.html#0", "text": "The default is 10.", "similarity": 0.9}],
        })
        .to_string();
        let html = retrieval(&output).unwrap();
        assert!(
            html.contains("Widget &lt;limits&gt;") && html.contains("w.html"),
            "{html}"
        );
        assert!(html.contains(&format!("{}…", "x".repeat(SNIPPET))), "{html}");
        assert!(html.contains("0.900 · The default is 10."), "{html}");
        assert!(retrieval("#### 30").is_none());
    }
}
