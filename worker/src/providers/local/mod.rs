//! In-process GGUF inference on CPU with llama.cpp (`llama-cpp-2`).
//!
//! - One model per worker process, loaded once and shared; calls run on
//!   blocking threads, at most `max_concurrency` at a time, each with its own
//!   llama.cpp context.
//! - Label steps (a classification, a rag extraction choosing among
//!   candidate spans, a critique's verdict) are answered by scoring each label's log-likelihood after
//!   the prompt, so the output is always a label and the confidence is the
//!   label's probability among the labels. With `samples` = n, n phrasings
//!   of the prompt are scored and their probabilities averaged.
//! - Other steps generate greedily (reproducible); a step with an output
//!   schema generates under a grammar compiled from the schema. Confidence is
//!   the geometric mean probability of the chosen tokens (renormalised over
//!   what the grammar allows). With `samples` = n, n answers are drawn at
//!   `temperature` and the majority answer wins (self-consistency);
//!   confidence is then the winner's share of the votes. Every sample counts
//!   towards the tokens, hence the cost.

mod session;

use super::Completion;
use crate::error::ProviderError;
use crate::prompt::{self, Prompt};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use session::{Generated, Session};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Semaphore;
use upshift_shared::TaskType;
use upshift_shared::config::{LocalConfig, PromptFormat};
use upshift_shared::messages::TaskMessage;
use upshift_shared::verify::final_answer;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// llama.cpp's process-wide backend, initialised once; its logs go to `tracing`.
fn backend() -> Result<&'static LlamaBackend, String> {
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A loaded GGUF model and how to prompt it.
pub struct LocalModel {
    model: LlamaModel,
    cfg: LocalConfig,
    path: PathBuf,
    template: Option<LlamaChatTemplate>,
    /// llama.cpp's context creation mutates the model: one at a time.
    create: Mutex<()>,
}

/// A prompt in parts: (text, whether special-token markers in it are read
/// as special tokens). Template text is; what users and documents wrote is
/// not.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The parts in order.
    pub parts: Vec<(String, bool)>,
}

impl Rendered {
    /// The whole prompt as one text (for logs and display).
    pub fn text(&self) -> String {
        self.parts.iter().map(|(t, _)| t.as_str()).collect()
    }
}

/// What one call cost in tokens and produced.
#[derive(Debug, Clone)]
struct Answer {
    output: String,
    confidence: f64,
    tokens_in: u32,
    tokens_out: u32,
}

impl LocalModel {
    /// Loads the GGUF file of `cfg` (relative paths against `dir`).
    pub fn load(cfg: &LocalConfig, dir: &Path) -> Result<LocalModel, String> {
        let path = cfg.file(dir);
        if !path.is_file() {
            return Err(format!(
                "model file {} not found; run `upshift models fetch` (or set UPSHIFT_MODEL_DIR)",
                path.display()
            ));
        }
        let model = LlamaModel::load_from_file(backend()?, &path, &LlamaModelParams::default())
            .map_err(|e| format!("loading {}: {e}", path.display()))?;
        let template = match cfg.prompt {
            PromptFormat::Chat => model.chat_template(None).ok(),
            PromptFormat::Completion => None,
        };
        Ok(LocalModel {
            model,
            cfg: cfg.clone(),
            path,
            template,
            create: Mutex::new(()),
        })
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The prompt for `p` in this model's format. Only the chat template's
    /// own markers are special: the user's message (the step's input, the
    /// passages) is plain text, so an input holding `<|im_end|>` cannot
    /// open a turn of its own.
    pub fn render(&self, p: &Prompt) -> Rendered {
        match self.cfg.prompt {
            PromptFormat::Completion => Rendered {
                parts: vec![(p.as_completion(), false)],
            },
            PromptFormat::Chat => {
                let system = self
                    .cfg
                    .system
                    .clone()
                    .unwrap_or_else(|| "You are a helpful assistant.".into());
                // The template is rendered around a placeholder, which is
                // then replaced by the message as text of its own.
                const SLOT: &str = "\u{1}upshift-user-message\u{1}";
                let from_gguf = self.template.as_ref().and_then(|t| {
                    let msgs = [
                        LlamaChatMessage::new("system".into(), system.clone()).ok()?,
                        LlamaChatMessage::new("user".into(), SLOT.into()).ok()?,
                    ];
                    self.model.apply_chat_template(t, &msgs, true).ok()
                });
                // ChatML when the file carries no usable template.
                let shell = from_gguf.filter(|s| s.matches(SLOT).count() == 1).unwrap_or_else(|| {
                    format!(
                        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{SLOT}<|im_end|>\n<|im_start|>assistant\n"
                    )
                });
                let (before, after) = shell.split_once(SLOT).expect("the shell holds the slot once");
                Rendered {
                    parts: vec![
                        (before.to_string(), true),
                        (p.user_message(), false),
                        (after.to_string(), true),
                    ],
                }
            }
        }
    }

    /// The tokens of `r` as the model reads them (beginning-of-text first
    /// for a completion prompt), for tests and diagnostics.
    pub fn tokens(&self, r: &Rendered) -> Vec<i32> {
        session::tokenize(&self.model, r, self.cfg.prompt == PromptFormat::Completion)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// How many of `tokens` are control tokens (role markers, end of turn).
    pub fn control_tokens(&self, tokens: &[i32]) -> usize {
        tokens
            .iter()
            .filter(|t| self.model.vocab().is_control(llama_cpp_2::token::LlamaToken(**t)))
            .count()
    }

    fn session(&self) -> Result<Session<'_>, String> {
        let _guard = self.create.lock().map_err(|_| "model lock poisoned".to_string())?;
        Session::new(&self.model, backend()?, &self.cfg)
    }

    /// Answers `task` (blocking; call from a blocking thread).
    fn answer(&self, task: &TaskMessage) -> Result<Answer, String> {
        // Any step with a closed label set (a classification, a rag step's
        // candidate spans or verdicts) is answered by scoring the labels.
        if !task.labels.is_empty() {
            return self.score_labels(task);
        }
        let text = self.render(&prompt::build(task, 0));
        let grammar = match (&prompt::decoding_schema(task), prompt::citation_grammar(task)) {
            (Some(s), _) => Some(
                llama_cpp_2::json_schema_to_grammar(&s.to_string()).map_err(|e| format!("schema to grammar: {e}"))?,
            ),
            (None, g) => g,
        };
        let mut s = self.session()?;
        let n_prompt = s.feed_prompt(&text, self.cfg.prompt == PromptFormat::Completion)?;
        let stop_at_newline = self.cfg.prompt == PromptFormat::Completion && grammar.is_none();
        let n = self.cfg.samples;
        let mut samples: Vec<Generated> = Vec::with_capacity(n as usize);
        for i in 0..n {
            let temperature = if n == 1 { 0.0 } else { self.cfg.temperature };
            let seed = self.cfg.seed.wrapping_add(i);
            let budget = task.token_budget(self.cfg.max_tokens);
            samples.push(s.generate(grammar.as_deref(), (temperature, seed), stop_at_newline, budget)?);
            s.rewind(n_prompt)?;
        }
        let tokens_out = samples.iter().map(|g| g.tokens).sum();
        let (output, confidence) = if n == 1 {
            let g = samples.pop().expect("one sample");
            (g.text, g.confidence)
        } else {
            majority(task.task, &samples)
        };
        Ok(Answer {
            output: output.trim().to_string(),
            confidence,
            tokens_in: n_prompt * n,
            tokens_out,
        })
    }

    /// Scores every label after the prompt; averages over `samples` phrasings.
    ///
    /// Small models prefer some labels whatever the text (a label prior), so
    /// the scores are calibrated against the same prompt with a content-free
    /// text ("N/A"): p(label | text) / p(label | N/A), renormalised
    /// ("contextual calibration", Zhao et al., 2021). The prompts share
    /// their opening (a rag step's evidence), which the context keeps: only
    /// the tokens where they differ are read again, and only those count.
    fn score_labels(&self, task: &TaskMessage) -> Result<Answer, String> {
        let mut s = self.session()?;
        let mut probs = vec![0.0; task.labels.len()];
        let mut tokens_in = 0;
        for v in 0..self.cfg.samples {
            let (with_text, n1) = self.label_logprobs(&mut s, &prompt::build(task, v), &task.labels)?;
            let (content_free, n2) = self.label_logprobs(&mut s, &prompt::content_free(task, v), &task.labels)?;
            tokens_in += n1 + n2;
            let calibrated: Vec<f64> = with_text.iter().zip(&content_free).map(|(a, b)| a - b).collect();
            for (p, q) in probs.iter_mut().zip(softmax(&calibrated)) {
                *p += q / f64::from(self.cfg.samples);
            }
        }
        let (best, p) = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("labels are not empty");
        Ok(Answer {
            output: task.labels[best].clone(),
            confidence: *p,
            tokens_in,
            tokens_out: 1,
        })
    }

    /// Log-probability of each label after prompt `p`, and the tokens read.
    fn label_logprobs(&self, s: &mut Session<'_>, p: &Prompt, labels: &[String]) -> Result<(Vec<f64>, u32), String> {
        let completion = self.cfg.prompt == PromptFormat::Completion;
        let lead = if completion { " " } else { "" };
        let (n_prompt, mut tokens) = s.prompt(&self.render(p), completion)?;
        let mut logps = Vec::with_capacity(labels.len());
        for label in labels {
            let (lp, n) = s.continuation_logprob(&format!("{lead}{label}"))?;
            s.rewind(n_prompt)?;
            logps.push(lp);
            tokens += n;
        }
        Ok((logps, tokens))
    }

    /// Timings of a plain prompt and `n_gen` greedy tokens, for benchmarks:
    /// (prompt tokens, prompt seconds, generated tokens, generation seconds).
    pub fn bench(&self, text: &str, n_gen: u32) -> Result<(u32, f64, u32, f64), String> {
        let mut s = self.session()?;
        let text = Rendered {
            parts: vec![(text.to_string(), false)],
        };
        let t = std::time::Instant::now();
        let n_prompt = s.feed_prompt(&text, self.cfg.prompt == PromptFormat::Completion)?;
        let prompt_secs = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let n = s.generate_fixed(n_gen)?;
        Ok((n_prompt, prompt_secs, n, t.elapsed().as_secs_f64()))
    }
}

/// The majority answer of `samples` and its vote share.
fn majority(task: TaskType, samples: &[Generated]) -> (String, f64) {
    let key = |text: &str| -> String {
        // Agreement on what decides: a critique's verdict, the passages a
        // synthesis rests on (its wording always differs between samples).
        if task == TaskType::Critique
            && let Some(v) = upshift_shared::verify::rag::Verdict::parse(text)
        {
            return v.verdict.as_str().to_string();
        }
        if task == TaskType::Synthesise {
            let mut cited = upshift_shared::verify::rag::text::citations(text);
            cited.sort();
            return cited.join(" ");
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim()) {
            return v.to_string();
        }
        if task == TaskType::Answer
            && let Some(a) = final_answer(text)
        {
            return format!("{a}");
        }
        text.trim().to_lowercase()
    };
    let mut votes: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, g) in samples.iter().enumerate() {
        votes.entry(key(&g.text)).or_insert((0, i)).0 += 1;
    }
    // Most votes; ties go to the earliest sample.
    let (count, first) = votes
        .values()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .copied()
        .expect("at least one sample");
    (samples[first].text.clone(), count as f64 / samples.len() as f64)
}

fn softmax(xs: &[f64]) -> Vec<f64> {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// The provider: a shared [`LocalModel`] behind a concurrency limit.
pub struct LocalProvider {
    model: Arc<LocalModel>,
    slots: Arc<Semaphore>,
    limit: usize,
}

impl LocalProvider {
    /// Loads the model of `cfg`.
    pub fn load(cfg: &LocalConfig, dir: &Path) -> Result<Self, String> {
        Ok(Self {
            model: Arc::new(LocalModel::load(cfg, dir)?),
            slots: Arc::new(Semaphore::new(cfg.max_concurrency)),
            limit: cfg.max_concurrency,
        })
    }

    /// Calls run at once.
    pub fn max_concurrency(&self) -> usize {
        self.limit
    }

    /// Runs the model on `task` on a blocking thread.
    pub async fn complete(&self, task: &TaskMessage) -> Result<Completion, ProviderError> {
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ProviderError::Fatal("provider closed".into()))?;
        let (model, task) = (self.model.clone(), task.clone());
        let a = tokio::task::spawn_blocking(move || model.answer(&task))
            .await
            .map_err(|e| ProviderError::Fatal(format!("inference thread failed: {e}")))?
            .map_err(ProviderError::Fatal)?;
        Ok(Completion {
            output: a.output,
            tokens_in: Some(a.tokens_in),
            tokens_out: Some(a.tokens_out),
            confidence: Some(a.confidence.clamp(0.0, 1.0)),
            label_correct: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_votes_on_meaning_not_spelling() {
        let g = |t: &str| Generated {
            text: t.into(),
            confidence: 0.5,
            tokens: 3,
        };
        let s = [g("{\"a\": 1}"), g("{\"a\":1}"), g("{\"a\": 2}")];
        let (out, share) = majority(TaskType::Extract, &s);
        assert_eq!(out, "{\"a\": 1}");
        assert!((share - 2.0 / 3.0).abs() < 1e-9);
        let s = [g("x\n#### 4"), g("y\n#### 5"), g("z\n#### 4.0")];
        assert_eq!(majority(TaskType::Answer, &s).0, "x\n#### 4");
    }
}
