//! Token estimates and prices.
//!
//! When a provider reports no token counts (recorded datasets do not), tokens
//! are estimated as one per four bytes of UTF-8 text, rounded up, with a floor
//! of one: the usual rule of thumb for English under BPE tokenisers (OpenAI's
//! tokenizer guide gives ~4 characters per token). Prices are US dollars per
//! million tokens, split into input and output.
//!
//! The orchestrator books what an attempt cost itself ([`price`]): the
//! tokens a worker reports, clipped to what the call could have used
//! ([`TokenCaps`]), times its own price table, and never more than the job
//! has left. A worker's own cost figure is not trusted (NATS is a trust
//! boundary; docs/security.md).

/// Estimated token count of `text`: `ceil(bytes / 4)`, at least 1.
pub fn estimate_tokens(text: &str) -> u32 {
    let n = text.len().div_ceil(4).max(1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Price of one call given per-million prices.
pub fn call_cost(tokens_in: u32, tokens_out: u32, usd_per_m_in: f64, usd_per_m_out: f64) -> f64 {
    (f64::from(tokens_in) * usd_per_m_in + f64::from(tokens_out) * usd_per_m_out) / 1_000_000.0
}

/// Bytes of prompt text a worker's templates may add to a task's own text
/// (instructions, few-shot examples, role markers), per run of the model.
/// All of `worker/src/prompt/` is under 18 KB of source, templates and code
/// together; a template is a fraction of that, so this bounds it with room.
pub const TEMPLATE_ALLOWANCE_BYTES: usize = 16 * 1024;

/// The most tokens one call can have read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCaps {
    /// Prompt tokens.
    pub tokens_in: u32,
    /// Completion tokens.
    pub tokens_out: u32,
}

/// An attempt's price as the orchestrator books it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priced {
    /// Prompt tokens booked.
    pub tokens_in: u32,
    /// Completion tokens booked.
    pub tokens_out: u32,
    /// Dollars booked.
    pub cost_usd: f64,
    /// Whether a reported count was above its cap or the price above what
    /// the job had left (either means the worker's report was not believed).
    pub capped: bool,
}

/// Prices a call from the `reported` (in, out) tokens: each clipped to
/// `caps`, priced per million, the total at most `budget_left` (when the
/// job has a budget; nothing below zero).
pub fn price(
    reported: (u32, u32),
    caps: TokenCaps,
    usd_per_m_in: f64,
    usd_per_m_out: f64,
    budget_left: Option<f64>,
) -> Priced {
    let (tokens_in, tokens_out) = (reported.0.min(caps.tokens_in), reported.1.min(caps.tokens_out));
    let mut capped = (tokens_in, tokens_out) != reported;
    let mut cost_usd = call_cost(tokens_in, tokens_out, usd_per_m_in, usd_per_m_out);
    if let Some(left) = budget_left
        && cost_usd > left.max(0.0)
    {
        cost_usd = left.max(0.0);
        capped = true;
    }
    Priced {
        tokens_in,
        tokens_out,
        cost_usd,
        capped,
    }
}

/// A count of bytes as a token cap (a token covers at least one byte).
pub fn bytes_cap(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_tokens_are_clipped_and_the_budget_bounds_the_price() {
        let caps = TokenCaps {
            tokens_in: 1_000,
            tokens_out: 100,
        };
        let fair = price((500, 50), caps, 1.0, 2.0, Some(1.0));
        assert_eq!((fair.tokens_in, fair.tokens_out, fair.capped), (500, 50, false));
        assert!((fair.cost_usd - 0.0006).abs() < 1e-12);
        // A worker claiming a huge call is booked for what the call could use.
        let inflated = price((u32::MAX, u32::MAX), caps, 1.0, 2.0, None);
        assert_eq!(
            (inflated.tokens_in, inflated.tokens_out, inflated.capped),
            (1_000, 100, true)
        );
        assert!((inflated.cost_usd - 0.0012).abs() < 1e-12);
        // Never more than the job has left, never below zero.
        let over = price((1_000, 100), caps, 1_000.0, 1_000.0, Some(0.25));
        assert_eq!((over.cost_usd, over.capped), (0.25, true));
        assert_eq!(price((1, 1), caps, 1.0, 1.0, Some(-3.0)).cost_usd, 0.0);
    }

    #[test]
    fn estimates_and_prices() {
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        let c = call_cost(1_000_000, 500_000, 0.24, 0.24);
        assert!((c - 0.36).abs() < 1e-12);
    }
}
