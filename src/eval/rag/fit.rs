//! How far each tier's model can be trusted on a rag step, measured on
//! labelled jobs.
//!
//! Every extraction and critique decision of a run is known to be right or
//! wrong: an extraction's span is an accepted answer or not; a critique's
//! `supported` stands for an answer that is right or not. A tier's answers
//! of a step are trusted from the lowest confidence at which they are right
//! at least `target` of the time — counted conservatively: the lower end of
//! the Wilson interval of their precision at one-sided `confidence`, so ten
//! right out of ten is not taken for certainty (dev sets are small); a tier
//! with no such confidence is never trusted. The result is the
//! `routing.accept.<tier>.by_class` thresholds of `rag_extract` and
//! `rag_critique`. The extraction's tier zero (the evidence's own first
//! choice) has a score of its own, fitted by `--fit-zero` (`replay`).
//!
//! Two calibration runs measure them (docs/rag.md): with
//! `policies/rag-calibrate-extract.toml` every extraction climbs every tier
//! (tier zero included); with `policies/rag-calibrate-critic.toml` the
//! answers are the ones the system would give, and every critique judges
//! its answer on every tier. Anything not measured is not trusted.

use super::score::Record;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use upshift_shared::policy::NEVER_TRUSTED;
use upshift_shared::verify::rag::extractive::NO_ANSWER;

/// One step's model on one tier, as measured.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    /// `extract` or `critique`.
    pub step: String,
    /// The tier.
    pub tier: String,
    /// Decisions measured.
    pub n: usize,
    /// Share that were right (an extraction's span; a critique's verdict agreeing with the truth).
    pub accuracy: f64,
    /// The threshold fitted ([`NEVER_TRUSTED`] = never).
    pub threshold: f64,
    /// Decisions it would accept.
    pub accepted: usize,
    /// Share of those that were right.
    pub precision: Option<f64>,
    /// The lower bound of that share that was held to the target.
    pub precision_lower: Option<f64>,
}

/// The standard normal quantile of `p` in (0.5, 1) (Abramowitz and Stegun
/// 26.2.23, error under 5e-4).
fn z_of(p: f64) -> f64 {
    let t = (-2.0 * (1.0 - p).ln()).sqrt();
    t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)
}

/// The lower end of the Wilson score interval of `right` successes in `n`.
pub fn wilson_lower(right: usize, n: usize, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (n, p) = (n as f64, right as f64 / n as f64);
    let z2 = z * z;
    (p + z2 / (2.0 * n) - z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n)
}

/// Fits each (step, tier) threshold so that the lower bound of its
/// precision at one-sided `confidence` reaches `target`.
pub fn fit(records: &[&Record], target: f64, confidence: f64) -> Vec<Fit> {
    let z = z_of(confidence.clamp(0.51, 0.999));
    // (acceptable?, confidence, right) per (step, tier).
    type Observed = (bool, f64, bool);
    let mut obs: BTreeMap<(&str, &str), Vec<Observed>> = BTreeMap::new();
    let mut agree: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for r in records {
        for d in &r.decisions {
            let key = (d.step.as_str(), d.tier.as_str());
            let conf = d.confidence.unwrap_or(0.0);
            // Only an answer its verifiers passed can be accepted; "none of
            // these" never is (it is a refusal).
            let (acceptable, agrees) = match d.step.as_str() {
                "extract" => (
                    d.passed && !d.said.eq_ignore_ascii_case(NO_ANSWER),
                    d.right || (d.said.eq_ignore_ascii_case(NO_ANSWER) && !r.answerable),
                ),
                _ => (d.passed && d.said == "supported", (d.said == "supported") == d.right),
            };
            obs.entry(key).or_default().push((acceptable, conf, d.right));
            *agree.entry(key).or_default() += usize::from(agrees);
        }
    }
    // A tier not measured for a step the run measured is not trusted for it.
    let mut steps: Vec<&str> = obs.keys().map(|k| k.0).collect();
    steps.dedup();
    for step in steps {
        for tier in ["small", "medium", "strong"] {
            obs.entry((step, tier)).or_default();
            agree.entry((step, tier)).or_default();
        }
    }
    obs.into_iter()
        .map(|((step, tier), o)| {
            let at = |t: f64| {
                let acc: Vec<&(bool, f64, bool)> = o.iter().filter(|x| x.0 && x.1 >= t).collect();
                (acc.len(), acc.iter().filter(|x| x.2).count())
            };
            let mut cands: Vec<f64> = o.iter().filter(|x| x.0).map(|x| x.1).collect();
            cands.sort_by(f64::total_cmp);
            let chosen = cands.into_iter().find(|&t| {
                let (n, right) = at(t);
                wilson_lower(right, n, z) >= target
            });
            let (accepted, right) = chosen.map_or((0, 0), at);
            Fit {
                step: step.to_string(),
                tier: tier.to_string(),
                n: o.len(),
                accuracy: agree[&(step, tier)] as f64 / o.len().max(1) as f64,
                threshold: chosen.unwrap_or(NEVER_TRUSTED),
                accepted,
                precision: (accepted > 0).then(|| right as f64 / accepted as f64),
                precision_lower: (accepted > 0).then(|| wilson_lower(right, accepted, z)),
            }
        })
        .collect()
}

/// The fitted thresholds as a policy file.
pub fn to_toml(fits: &[Fit], target: f64, confidence: f64, source: &str) -> String {
    let mut out = format!(
        "# How far each tier's model is trusted on rag steps, fitted by\n\
         # `upshift eval rag --fit` on {source} for precision {target}\n\
         # (the lower bound at one-sided confidence {confidence}):\n\
         # an answer counts from this confidence on; 1 = never.\n"
    );
    let mut tiers: BTreeMap<&str, Vec<&Fit>> = BTreeMap::new();
    for f in fits {
        tiers.entry(f.tier.as_str()).or_default().push(f);
    }
    let comment = |what: &str, f: &Fit| {
        let shown = |x: Option<f64>| x.map_or("-".into(), |p| format!("{p:.2}"));
        format!(
            "# {what}: {} decisions, right {:.2}; {} at or above the threshold, precision {} (lower bound {})",
            f.n,
            f.accuracy,
            f.accepted,
            shown(f.precision),
            shown(f.precision_lower)
        )
    };
    // Tier zero has its own calibrated score (`--fit-zero`).
    tiers.remove("zero");
    for (tier, fs) in tiers {
        let _ = writeln!(out, "[routing.accept.{tier}.by_class]");
        for f in fs {
            let _ = writeln!(out, "{}", comment(&f.step, f));
            let _ = writeln!(out, "rag_{} = {:.4}", f.step, f.threshold.min(NEVER_TRUSTED));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(right: bool, critiques: &[(&str, &str, f64)]) -> Record {
        use super::super::score::Judged;
        Record {
            id: "a".into(),
            split: "dev".into(),
            answerable: true,
            job: String::new(),
            status: "unresolved".into(),
            answer: None,
            short_answer: None,
            answer_match: right,
            hit_at_1: false,
            hit_at_k: false,
            cited_page: false,
            cost_usd: 0.0,
            always_strong_cost_usd: 0.0,
            job_s: 0.0,
            step_s: BTreeMap::new(),
            tiers: BTreeMap::new(),
            findings: Vec::new(),
            retrieval: None,
            decisions: critiques
                .iter()
                .map(|(t, v, c)| Judged {
                    step: "critique".into(),
                    tier: t.to_string(),
                    said: v.to_string(),
                    confidence: Some(*c),
                    right,
                    passed: true,
                })
                .collect(),
        }
    }

    #[test]
    fn a_critic_is_trusted_from_the_confidence_where_it_is_precise_enough() {
        let rs = [
            rec(true, &[("small", "supported", 0.9), ("strong", "supported", 0.6)]),
            rec(true, &[("small", "supported", 0.8), ("strong", "unsupported", 0.7)]),
            rec(false, &[("small", "supported", 0.6), ("strong", "supported", 0.9)]),
            rec(false, &[("small", "unsupported", 0.7), ("strong", "supported", 0.95)]),
        ];
        let refs: Vec<&Record> = rs.iter().collect();
        // Two right of two is not much evidence: trusted for a modest target only.
        let fits = fit(&refs, 0.5, 0.8);
        let small = fits.iter().find(|f| f.tier == "small" && f.step == "critique").unwrap();
        assert_eq!((small.threshold, small.accepted), (0.8, 2));
        assert!((small.accuracy - 0.75).abs() < 1e-9);
        let strong = fits.iter().find(|f| f.tier == "strong").unwrap();
        assert_eq!(strong.threshold, NEVER_TRUSTED, "its confident verdicts are wrong");
        assert!(fit(&refs, 0.9, 0.8).iter().all(|f| f.threshold == NEVER_TRUSTED));
        assert!((wilson_lower(10, 10, z_of(0.8)) - 0.934).abs() < 0.002);
        assert!((z_of(0.95) - 1.645).abs() < 0.001);
        let toml = to_toml(&fits, 0.5, 0.8, "dev");
        assert!(
            toml.contains("[routing.accept.small.by_class]\n# critique") && toml.contains("rag_critique = 0.8000"),
            "{toml}"
        );
    }
}
