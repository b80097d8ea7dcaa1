//! One llama.cpp context: feeding tokens, scoring continuations, and
//! generating with an optional grammar.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use std::num::NonZeroU32;
use upshift_shared::config::LocalConfig;

use super::Rendered;

/// The tokens of a rendered prompt: each part on its own, special-token
/// markers parsed only in the parts that allow them; beginning-of-text
/// first when `add_bos`.
pub(super) fn tokenize(model: &LlamaModel, r: &Rendered, add_bos: bool) -> Vec<LlamaToken> {
    let mut out = Vec::new();
    for (i, (text, special)) in r.parts.iter().enumerate() {
        if !text.is_empty() || (i == 0 && add_bos) {
            out.extend(model.vocab().tokenize(text.as_bytes(), add_bos && i == 0, *special));
        }
    }
    out
}

/// Candidates considered per generated token before the grammar filters them.
const TOP_K: usize = 40;

/// A generated answer.
#[derive(Debug, Clone)]
pub(super) struct Generated {
    /// The text, special tokens left out.
    pub text: String,
    /// Geometric mean probability of the chosen tokens.
    pub confidence: f64,
    /// Tokens generated.
    pub tokens: u32,
}

pub(super) struct Session<'m> {
    ctx: LlamaContext<'m>,
    model: &'m LlamaModel,
    n_past: u32,
    /// The tokens in the context, in order (`n_past` of them).
    fed: Vec<LlamaToken>,
    n_ctx: u32,
    n_batch: usize,
    max_tokens: u32,
    /// Logits after the last prompt token, kept to restart generation.
    prompt_logits: Vec<f32>,
    /// One batch buffer, reused for every decode (one per generated token).
    batch: LlamaBatch<'static>,
}

impl<'m> Session<'m> {
    pub fn new(model: &'m LlamaModel, backend: &LlamaBackend, cfg: &LocalConfig) -> Result<Self, String> {
        let n_batch = cfg.context_tokens.min(512);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cfg.context_tokens))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(cfg.threads as i32)
            .with_n_threads_batch(cfg.threads as i32);
        let ctx = model
            .new_context(backend, params)
            .map_err(|e| format!("creating a llama.cpp context: {e}"))?;
        Ok(Session {
            ctx,
            model,
            n_past: 0,
            fed: Vec::new(),
            n_ctx: cfg.context_tokens,
            n_batch: n_batch as usize,
            max_tokens: cfg.max_tokens,
            prompt_logits: Vec::new(),
            batch: LlamaBatch::new(n_batch as usize, 1),
        })
    }

    /// Drops everything after the first `n` tokens.
    pub fn rewind(&mut self, n: u32) -> Result<(), String> {
        self.ctx
            .clear_kv_cache_seq(Some(0), Some(n), None)
            .map_err(|e| e.to_string())?;
        self.n_past = n;
        self.fed.truncate(n as usize);
        Ok(())
    }

    /// Makes `text` the prompt, keeping what the context already holds of
    /// it: only the tokens after the longest common prefix with what was
    /// fed before are decoded. Returns (prompt tokens, tokens decoded now).
    pub fn prompt(&mut self, text: &Rendered, add_bos: bool) -> Result<(u32, u32), String> {
        let tokens = tokenize(self.model, text, add_bos);
        let n = tokens.len();
        if n == 0 || n as u32 + 16 > self.n_ctx {
            return Err(format!(
                "prompt of {n} tokens does not fit the model's context of {} tokens",
                self.n_ctx
            ));
        }
        let common = self.fed.iter().zip(&tokens).take_while(|(a, b)| a == b).count();
        // At least the last token is decoded again: its logits start the answer.
        let keep = common.min(n - 1);
        self.rewind(keep as u32)?;
        self.feed(&tokens[keep..], false)?;
        self.prompt_logits = self.ctx.get_logits_ith(self.last_index(&tokens[keep..])).to_vec();
        Ok((n as u32, (n - keep) as u32))
    }

    /// Tokenizes and feeds a prompt; returns its token count.
    pub fn feed_prompt(&mut self, text: &Rendered, add_bos: bool) -> Result<u32, String> {
        let tokens = tokenize(self.model, text, add_bos);
        let n = tokens.len() as u32;
        if n == 0 || self.n_past + n + 16 > self.n_ctx {
            return Err(format!(
                "prompt of {n} tokens does not fit the model's context of {} tokens",
                self.n_ctx
            ));
        }
        self.feed(&tokens, false)?;
        self.prompt_logits = self.ctx.get_logits_ith(self.last_index(&tokens)).to_vec();
        Ok(n)
    }

    fn last_index(&self, tokens: &[LlamaToken]) -> i32 {
        ((tokens.len() - 1) % self.n_batch) as i32
    }

    /// Decodes `tokens` in batches; logits for every token when `all`
    /// (only allowed within one batch), else for the last one.
    fn feed(&mut self, tokens: &[LlamaToken], all: bool) -> Result<(), String> {
        if all && tokens.len() > self.n_batch {
            return Err("continuation longer than a batch".into());
        }
        let chunks = tokens.len().div_ceil(self.n_batch);
        for (c, chunk) in tokens.chunks(self.n_batch).enumerate() {
            self.batch.clear();
            for (j, t) in chunk.iter().enumerate() {
                let last = c + 1 == chunks && j + 1 == chunk.len();
                self.batch
                    .add(*t, (self.n_past + j as u32) as i32, &[0], all || last)
                    .map_err(|e| e.to_string())?;
            }
            self.ctx.decode(&mut self.batch).map_err(|e| format!("decode: {e}"))?;
            self.n_past += chunk.len() as u32;
            self.fed.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Log-probability of `text` following the prompt, and its token count.
    pub fn continuation_logprob(&mut self, text: &str) -> Result<(f64, u32), String> {
        let toks = self.model.vocab().tokenize(text.as_bytes(), false, false);
        let Some(first) = toks.first() else { return Ok((0.0, 0)) };
        let mut lp = log_softmax_at(&self.prompt_logits, first.0 as usize);
        if toks.len() > 1 {
            self.feed(&toks[..toks.len() - 1], true)?;
            for (j, next) in toks[1..].iter().enumerate() {
                lp += log_softmax_at(self.ctx.get_logits_ith(j as i32), next.0 as usize);
            }
        }
        Ok((lp, toks.len() as u32))
    }

    /// Generates after the prompt: greedy at temperature 0, else sampled
    /// with `seed`. Stops at end-of-generation, at `max_tokens` (at most the
    /// model's configured limit), at the end of the context, or (with
    /// `stop_at_newline`) after the first line.
    pub fn generate(
        &mut self,
        grammar: Option<&str>,
        (temperature, seed): (f32, u32),
        stop_at_newline: bool,
        max_tokens: u32,
    ) -> Result<Generated, String> {
        let mut sampler = match grammar {
            Some(g) => Some(LlamaSampler::grammar(self.model, g, "root").map_err(|e| format!("grammar: {e}"))?),
            None => None,
        };
        let mut rng = fastrand::Rng::with_seed(u64::from(seed));
        let mut logits = self.prompt_logits.clone();
        let budget = max_tokens
            .min(self.max_tokens)
            .min(self.n_ctx.saturating_sub(self.n_past + 1));
        let (mut bytes, mut sum_logp, mut n) = (Vec::new(), 0.0, 0u32);
        let vocab = self.model.vocab();
        while n < budget {
            let (tok, p) = pick(&logits, sampler.as_mut(), temperature, &mut rng)?;
            if vocab.is_eog(tok) {
                break;
            }
            if let Some(s) = sampler.as_mut() {
                s.accept(tok);
            }
            sum_logp += p.max(1e-12).ln();
            n += 1;
            bytes.extend(vocab.token_to_piece(tok, false, None));
            if stop_at_newline && bytes.ends_with(b"\n") && bytes.iter().any(|b| !b.is_ascii_whitespace()) {
                break;
            }
            self.feed(&[tok], false)?;
            logits = self.ctx.get_logits_ith(0).to_vec();
        }
        Ok(Generated {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            confidence: if n == 0 { 0.0 } else { (sum_logp / f64::from(n)).exp() },
            tokens: n,
        })
    }

    /// Generates exactly `n` greedy tokens, ignoring end-of-generation (benchmarks).
    pub fn generate_fixed(&mut self, n: u32) -> Result<u32, String> {
        let mut logits = self.prompt_logits.clone();
        let n = n.min(self.n_ctx.saturating_sub(self.n_past + 1));
        for _ in 0..n {
            let best = argmax(&logits);
            self.feed(&[LlamaToken(best as i32)], false)?;
            logits = self.ctx.get_logits_ith(0).to_vec();
        }
        Ok(n)
    }
}

/// Picks the next token and its probability. With a grammar the choice is
/// among the allowed tokens and the probability is renormalised over them.
fn pick(
    logits: &[f32],
    grammar: Option<&mut LlamaSampler>,
    temperature: f32,
    rng: &mut fastrand::Rng,
) -> Result<(LlamaToken, f64), String> {
    let top = top_k(logits, TOP_K);
    let (cands, lse) = match grammar {
        None => (top, log_sum_exp(logits.iter().copied())),
        Some(g) => {
            let mut allowed = allowed_by(g, &top);
            if allowed.is_empty() {
                let all: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
                allowed = allowed_by(g, &all);
            }
            let lse = log_sum_exp(allowed.iter().map(|c| c.1));
            (allowed, lse)
        }
    };
    if cands.is_empty() {
        return Err("the grammar allows no next token".into());
    }
    let chosen = if temperature <= 0.0 {
        cands
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("not empty")
    } else {
        let t = f64::from(temperature);
        let m = cands.iter().map(|c| f64::from(c.1)).fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = cands.iter().map(|c| ((f64::from(c.1) - m) / t).exp()).collect();
        let mut r = rng.f64() * w.iter().sum::<f64>();
        let mut idx = cands.len() - 1;
        for (i, wi) in w.iter().enumerate() {
            if r < *wi {
                idx = i;
                break;
            }
            r -= wi;
        }
        cands[idx]
    };
    Ok((LlamaToken(chosen.0 as i32), (f64::from(chosen.1) - lse).exp()))
}

fn allowed_by(g: &mut LlamaSampler, cands: &[(usize, f32)]) -> Vec<(usize, f32)> {
    let mut arr = LlamaTokenDataArray::from_iter(
        cands
            .iter()
            .map(|&(i, l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
        false,
    );
    arr.apply_sampler(g);
    arr.data
        .iter()
        .filter(|d| d.logit().is_finite())
        .map(|d| (d.id().0 as usize, d.logit()))
        .collect()
}

fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
    let k = k.min(idx.len());
    if k < idx.len() {
        idx.select_nth_unstable_by(k, |a, b| b.1.total_cmp(&a.1));
        idx.truncate(k);
    }
    idx.sort_by(|a, b| b.1.total_cmp(&a.1));
    idx
}

fn argmax(logits: &[f32]) -> usize {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

fn log_sum_exp(xs: impl Iterator<Item = f32> + Clone) -> f64 {
    let m = xs.clone().map(f64::from).fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + xs.map(|x| (f64::from(x) - m).exp()).sum::<f64>().ln()
}

fn log_softmax_at(logits: &[f32], i: usize) -> f64 {
    f64::from(logits.get(i).copied().unwrap_or(f32::NEG_INFINITY)) - log_sum_exp(logits.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_helpers_agree() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = (0..3).map(|i| log_softmax_at(&l, i).exp()).sum();
        assert!((z - 1.0).abs() < 1e-9);
        assert_eq!(top_k(&l, 2), vec![(2, 3.0), (1, 2.0)]);
        assert_eq!(argmax(&l), 2);
    }
}
