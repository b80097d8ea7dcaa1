//! `replay`: answers from a RouteLLM-format CSV of real recorded outputs.
//!
//! The file has a `prompt` column, a correctness column per model (`True` /
//! `False`) named after the model, and `<model>_response` with its text (an
//! empty answer when the file has none, as in MMLU). The task is looked up
//! as `<task type>: <input>`, then as its `input`, verbatim. The recorded correctness travels
//! back as a label for scoring; the router never reads it.

use super::{Completion, ModelProvider};
use crate::error::ProviderError;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use upshift_shared::messages::TaskMessage;

/// Recorded answers of one model, keyed by prompt.
#[derive(Debug)]
pub struct ReplayProvider {
    answers: HashMap<String, (String, Option<bool>)>,
    latency: Duration,
}

impl ReplayProvider {
    /// Loads `column` (and `<column>_response`) from each of `paths`; a
    /// prompt found in an earlier file wins.
    pub fn load(paths: &[std::path::PathBuf], column: &str, latency_ms: u64) -> Result<Self, String> {
        if paths.is_empty() {
            return Err("no datasets given".into());
        }
        let mut answers = HashMap::new();
        for path in paths.iter().rev() {
            load_file(path, column, &mut answers)?;
        }
        Ok(Self {
            answers,
            latency: Duration::from_millis(latency_ms),
        })
    }

    /// Number of recorded prompts.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether no prompt is recorded.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// Adds the answers of one file to `answers`.
fn load_file(path: &Path, column: &str, answers: &mut HashMap<String, (String, Option<bool>)>) -> Result<(), String> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| format!("cannot read dataset {}: {e}", path.display()))?;
    let headers = rdr.headers().map_err(|e| e.to_string())?.clone();
    let find = |name: &str| headers.iter().position(|h| h == name);
    let prompt = find("prompt").ok_or_else(|| format!("{} has no `prompt` column", path.display()))?;
    // Datasets without answer text (e.g. MMLU's) replay an empty answer.
    let response = find(&format!("{column}_response"));
    let label = find(column);
    if response.is_none() && label.is_none() {
        return Err(format!(
            "{} has neither `{column}` nor `{column}_response`",
            path.display()
        ));
    }
    let before = answers.len();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| format!("{} row {}: {e}", path.display(), i + 2))?;
        let correct = label.and_then(|l| match rec.get(l) {
            Some("True") => Some(true),
            Some("False") => Some(false),
            _ => None,
        });
        let text = response.and_then(|r| rec.get(r)).unwrap_or_default();
        answers.insert(rec[prompt].to_string(), (text.to_string(), correct));
    }
    if answers.len() == before && rdr.position().line() <= 1 {
        return Err(format!("{} has no rows", path.display()));
    }
    Ok(())
}

impl ModelProvider for ReplayProvider {
    async fn complete(&self, task: &TaskMessage) -> Result<Completion, ProviderError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        // `<task type>: <input>` first, so steps that share an input (the
        // steps of a rag job all carry its question) can be told apart.
        let keyed = format!("{}: {}", task.task, task.input);
        let (output, label) = self
            .answers
            .get(&keyed)
            .or_else(|| self.answers.get(&task.input))
            .ok_or_else(|| ProviderError::Fatal("no recorded answer for this input".into()))?;
        Ok(Completion {
            output: output.clone(),
            tokens_in: None,
            tokens_out: None,
            confidence: None,
            label_correct: *label,
        })
    }
    fn kind(&self) -> &'static str {
        "replay"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upshift_shared::{TaskType, Tier};

    #[tokio::test]
    async fn answers_recorded_prompts_only() {
        let dir = std::env::temp_dir().join(format!("replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.csv");
        std::fs::write(
            &path,
            "prompt,m,m_response\n\"What is 1+1?\",True,\"1 + 1 = 2\n#### 2\"\n",
        )
        .unwrap();
        let p = ReplayProvider::load(std::slice::from_ref(&path), "m", 0).unwrap();
        let mut task = TaskMessage {
            version: upshift_shared::messages::MESSAGE_VERSION,
            attempt_id: uuid::Uuid::now_v7(),
            attempt_token: uuid::Uuid::new_v4(),
            job_id: uuid::Uuid::now_v7(),
            step_id: uuid::Uuid::now_v7(),
            tier: Tier::Small,
            task: TaskType::Answer,
            input: "What is 1+1?".into(),
            context: vec![],
            output_schema: None,
            labels: vec![],
            max_tokens: None,
            stop: vec![],
        };
        let c = p.complete(&task).await.unwrap();
        assert_eq!((c.output.as_str(), c.label_correct), ("1 + 1 = 2\n#### 2", Some(true)));
        task.input = "unknown".into();
        assert!(matches!(p.complete(&task).await, Err(ProviderError::Fatal(_))));
        assert!(
            ReplayProvider::load(&[path], "other", 0)
                .unwrap_err()
                .contains("other_response")
        );
    }
}
