//! Tasks outside the job API: the demo's labelled tasks (short
//! classification and extraction jobs with known answers, written for the
//! demo, no dataset needed), and task messages for a model called directly
//! (benchmarks, `policy fit-ladder`).

use serde_json::{Value, json};

/// One labelled task.
pub struct Task {
    /// Short name shown in the report.
    pub name: &'static str,
    /// The job request body.
    pub body: Value,
    /// The known answer: a label, or the JSON fields that must match.
    pub expected: Value,
}

fn classify(name: &'static str, text: &str, labels: &[&str], answer: &str) -> Task {
    Task {
        name,
        body: json!({"kind": "steps", "blast_radius": "low", "steps": [
            {"name": name, "task": "classify", "input": text, "labels": labels}
        ]}),
        expected: json!(answer),
    }
}

fn extract(name: &'static str, text: &str, schema: Value, answer: Value) -> Task {
    Task {
        name,
        body: json!({"kind": "steps", "blast_radius": "low", "steps": [
            {"name": name, "task": "extract", "input": text, "output_schema": schema}
        ]}),
        expected: answer,
    }
}

fn object(fields: &[(&str, &str)]) -> Value {
    let props: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, t)| (k.to_string(), json!({"type": t})))
        .collect();
    let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

/// The demo's tasks.
pub fn all() -> Vec<Task> {
    vec![
        classify(
            "review-1",
            "The battery died after two days and support never answered my emails.",
            &["positive", "negative"],
            "negative",
        ),
        classify(
            "review-2",
            "Setup took five minutes and it has worked perfectly ever since. Great value.",
            &["positive", "negative"],
            "positive",
        ),
        classify(
            "news-1",
            "The central bank raised interest rates by half a percentage point on Tuesday.",
            &["sports", "business", "weather"],
            "business",
        ),
        classify(
            "news-2",
            "The striker scored twice in the final minutes and the team won the cup.",
            &["sports", "business", "weather"],
            "sports",
        ),
        classify(
            "ticket-1",
            "Production is down: no customer has been able to log in since 9:00.",
            &["urgent", "routine"],
            "urgent",
        ),
        extract(
            "contact",
            "Please contact Maria Lopez at maria.lopez@example.com about the delivery.",
            object(&[("name", "string"), ("email", "string")]),
            json!({"name": "Maria Lopez", "email": "maria.lopez@example.com"}),
        ),
        extract(
            "order",
            "We ordered 12 chairs for the new office.",
            object(&[("item", "string"), ("quantity", "integer")]),
            json!({"item": "chairs", "quantity": 12}),
        ),
        extract(
            "invoice",
            "Invoice INV-2041 from Acme Corp is due on 15 March 2025.",
            object(&[("invoice_number", "string"), ("company", "string")]),
            json!({"invoice_number": "INV-2041", "company": "Acme Corp"}),
        ),
    ]
}

/// Whether `output` gives the known answer: the same label, or every
/// expected field equal (strings compared case-insensitively, trimmed).
pub fn is_correct(expected: &Value, output: &str) -> bool {
    match expected {
        Value::String(label) => output.trim().trim_matches('"').eq_ignore_ascii_case(label),
        Value::Object(fields) => {
            let Ok(Value::Object(got)) = serde_json::from_str::<Value>(output.trim()) else {
                return false;
            };
            fields.iter().all(|(k, want)| match (want, got.get(k)) {
                (Value::String(w), Some(Value::String(g))) => g.trim().eq_ignore_ascii_case(w.trim()),
                (Value::Number(w), Some(Value::Number(g))) => w.as_f64() == g.as_f64(),
                _ => false,
            })
        }
        _ => false,
    }
}

/// A task message for a model called directly, outside a job (benchmarks,
/// `policy fit-ladder`): fresh ids, no context.
pub(crate) fn direct_task(
    tier: upshift_shared::Tier,
    task: &Value,
    input: &Value,
    labels: &Value,
    output_schema: &Value,
) -> anyhow::Result<upshift_shared::messages::TaskMessage> {
    Ok(serde_json::from_value(json!({
        "version": upshift_shared::messages::MESSAGE_VERSION, "attempt_id": uuid::Uuid::now_v7(),
        "attempt_token": uuid::Uuid::new_v4(), "job_id": uuid::Uuid::now_v7(),
        "step_id": uuid::Uuid::now_v7(), "tier": tier, "task": task, "input": input,
        "labels": labels, "output_schema": output_schema,
    }))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked_by_meaning() {
        assert!(is_correct(&json!("negative"), " Negative"));
        assert!(!is_correct(&json!("negative"), "positive"));
        let want = json!({"item": "chairs", "quantity": 12});
        assert!(is_correct(&want, r#"{"quantity": 12, "item": "Chairs"}"#));
        assert!(!is_correct(&want, r#"{"quantity": 10, "item": "chairs"}"#));
        assert!(!is_correct(&want, "not json"));
        assert_eq!(all().len(), 8);
    }
}
