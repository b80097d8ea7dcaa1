//! Token estimates and prices.
//!
//! When a provider reports no token counts (recorded datasets do not), tokens
//! are estimated as one per four bytes of UTF-8 text, rounded up, with a floor
//! of one: the usual rule of thumb for English under BPE tokenisers (OpenAI's
//! tokenizer guide gives ~4 characters per token). Prices are US dollars per
//! million tokens, split into input and output.

/// Estimated token count of `text`: `ceil(bytes / 4)`, at least 1.
pub fn estimate_tokens(text: &str) -> u32 {
    let n = text.len().div_ceil(4).max(1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Price of one call given per-million prices.
pub fn call_cost(tokens_in: u32, tokens_out: u32, usd_per_m_in: f64, usd_per_m_out: f64) -> f64 {
    (f64::from(tokens_in) * usd_per_m_in + f64::from(tokens_out) * usd_per_m_out) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_and_prices() {
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        let c = call_cost(1_000_000, 500_000, 0.24, 0.24);
        assert!((c - 0.36).abs() < 1e-12);
    }
}
