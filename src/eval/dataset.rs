//! Labelled datasets in RouteLLM's CSV format: a `prompt` column, an optional
//! `domain` column (the task class), one `True`/`False` column per model and,
//! optionally, `<model>_response` with its answer text.
//!
//! Items with answer text are `answer` steps (checkable by the verifiers);
//! items without are `classify` steps whose only routing lever is the start
//! tier of their class. The task class is `domain` when present, otherwise the
//! file name up to its first `_` or `.` (`gsm8k_dev.csv` → `gsm8k`), or the
//! value of `--class`.

use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::Path;
use upshift_shared::TaskType;
use upshift_shared::simulate::Recorded;

/// One labelled item.
#[derive(Debug, Clone)]
pub struct Item {
    /// The prompt (the step input).
    pub prompt: String,
    /// Task class.
    pub class: String,
    /// `answer` when answer text exists, else `classify`.
    pub task: TaskType,
    /// Model column → recorded answer.
    pub answers: HashMap<String, Recorded>,
}

impl Item {
    /// The single-step job that runs this item, as `POST /v1/jobs` takes it.
    pub fn job_body(&self, blast_radius: &str) -> serde_json::Value {
        serde_json::json!({
            "kind": "steps",
            "blast_radius": blast_radius,
            "steps": [{ "name": "solve", "task": self.task, "task_class": self.class, "input": self.prompt }],
        })
    }
}

/// A loaded dataset.
#[derive(Debug)]
pub struct Dataset {
    /// Items in file order.
    pub items: Vec<Item>,
    /// The model columns found.
    pub models: Vec<String>,
}

/// Loads `path`; `class` overrides the task class of every item.
pub fn load(path: &Path, class: Option<&str>) -> anyhow::Result<Dataset> {
    let mut rdr = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = rdr.headers()?.clone();
    let pos = |name: &str| headers.iter().position(|h| h == name);
    let prompt = pos("prompt").with_context(|| format!("{} has no `prompt` column", path.display()))?;
    let domain = pos("domain");
    let models: Vec<String> = headers
        .iter()
        .filter(|h| *h != "prompt" && *h != "domain" && !h.ends_with("_response"))
        .map(str::to_string)
        .collect();
    if models.is_empty() {
        bail!("{} has no model columns", path.display());
    }
    let responses: Vec<Option<usize>> = models.iter().map(|m| pos(&format!("{m}_response"))).collect();
    let has_text = responses.iter().all(Option::is_some);
    let file_class = path
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.split(['_', '.']).next())
        .unwrap_or("default")
        .to_string();
    let mut items = Vec::new();
    for (row, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{} row {}", path.display(), row + 2))?;
        let mut answers = HashMap::new();
        for (m, r) in models.iter().zip(&responses) {
            let label = &rec[pos(m).expect("model column exists")];
            let correct = match label {
                "True" | "true" | "1" => Some(true),
                "False" | "false" | "0" => Some(false),
                other => bail!(
                    "{} row {}: `{m}` is `{other}`, expected True or False",
                    path.display(),
                    row + 2
                ),
            };
            let output = r.map(|i| rec[i].to_string()).unwrap_or_default();
            answers.insert(m.clone(), Recorded { output, correct });
        }
        let class = match (class, domain) {
            (Some(c), _) => c.to_string(),
            (None, Some(d)) => rec[d].to_string(),
            (None, None) => file_class.clone(),
        };
        let task = if has_text { TaskType::Answer } else { TaskType::Classify };
        items.push(Item {
            prompt: rec[prompt].to_string(),
            class,
            task,
            answers,
        });
    }
    Ok(Dataset { items, models })
}

/// A stable fold number in `0..k` from the prompt text (FNV-1a), so folds do
/// not depend on file order.
pub fn fold_of(prompt: &str, k: usize) -> usize {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in prompt.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % k as u64) as usize
}

/// The replay dataset of the first replay model.
pub fn first_dataset(cfg: &upshift_shared::config::Config) -> anyhow::Result<std::path::PathBuf> {
    cfg.models
        .iter()
        .find_map(|m| match &m.provider {
            upshift_shared::config::ProviderConfig::Replay { datasets, .. } => datasets.first().cloned(),
            _ => None,
        })
        .context("no replay dataset in the configuration")
}
