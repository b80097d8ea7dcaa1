//! The `[routing]` section: where steps start, what each tier must show
//! to be accepted, and the fitted acceptance models. Data only; the policy
//! (`crate::policy`) reads it.

use crate::types::{BlastRadius, TaskType, Tier};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[routing]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Recorded on every route event, so decisions can be traced to a policy.
    pub policy_version: String,
    /// Start tier when no rule matches.
    pub default_tier: Tier,
    /// What happens to an answer the top tier (or the budget) leaves with
    /// open findings.
    pub at_top_tier: TopTierAction,
    /// Start rules; the first that matches wins.
    #[serde(default)]
    pub start_rules: Vec<StartRule>,
    /// Acceptance rule per tier; a tier without one accepts on verifiers alone.
    #[serde(default)]
    pub accept: BTreeMap<Tier, AcceptRule>,
    /// Fitted defensibility models; where one covers a (tier, class) it
    /// replaces the verifiers-and-confidence rule for that tier.
    #[serde(default)]
    pub accept_models: Vec<AcceptModel>,
    /// Per-class accuracy estimates from the data a policy was fitted on.
    /// Read by `upshift eval` to rank classes on the operating curve; the
    /// live router does not use them.
    #[serde(default)]
    pub calibration: BTreeMap<String, ClassCalibration>,
}

/// What fitting measured for one task class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassCalibration {
    /// Items of the class in the fitting data.
    pub n: u32,
    /// Smoothed accuracy of the cheapest tier's model.
    pub small_accuracy: f64,
    /// Smoothed accuracy of the strong tier's model.
    pub strong_accuracy: f64,
}

/// What becomes of an answer that no tier could defend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopTierAction {
    /// The step ends `unresolved`: its best answer is kept, marked as
    /// undefended, with the open findings; the job goes on and ends
    /// `unresolved` too. (`accept_with_findings` is the old name.)
    #[serde(alias = "accept_with_findings")]
    Unresolved,
    /// Fail the step with its reasons.
    Fail,
}

/// One row of the risk rule table. Absent conditions match anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRule {
    /// Matches when the job's blast radius is one of these.
    #[serde(default)]
    pub blast_radius: Option<Vec<BlastRadius>>,
    /// Matches when the step's task type is one of these.
    #[serde(default)]
    pub tasks: Option<Vec<TaskType>>,
    /// Matches when the step's task class is one of these.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Matches when the step's ambiguity is strictly below this.
    #[serde(default)]
    pub max_ambiguity: Option<f64>,
    /// The start tier when the rule matches.
    pub tier: Tier,
}

/// A tier's acceptance rule beyond passing verifiers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptRule {
    /// Lowest confidence accepted, when the provider reports one.
    pub min_confidence: f64,
    /// Per task class, a threshold that replaces `min_confidence`: how far
    /// this tier's answers of that class can be trusted, as measured (e.g.
    /// a critic's verdicts on the dev half of a labelled question set). `1`
    /// means never: the tier's answers of that class are not trusted at all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_class: BTreeMap<String, f64>,
}

/// The feature names, in a fixed order.
pub const FEATURES: &[&str] = &[
    "bias",
    "answer_format",
    "arithmetic_mismatch",
    "schema_invalid",
    "no_marker",
    "log_length",
    "computations",
    "hedges",
    "ambiguity",
    "confidence",
    "has_confidence",
    "non_integer_answer",
    "negative_answer",
    "answer_in_question",
    "numbers_unused",
    "length_ratio",
    "question_numbers",
    "question_percent",
    "question_length",
];

/// A fitted acceptance model for one tier and a set of task classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptModel {
    /// The tier whose answers it judges.
    pub tier: crate::Tier,
    /// Task classes it applies to; absent = every class.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Accept when the score is at or above this.
    pub threshold: f64,
    /// Weights of P(this tier's answer is right), per feature name (see
    /// [`FEATURES`]); missing names weigh 0.
    pub weights: BTreeMap<String, f64>,
    /// Weights of P(the strong tier would be right), from the same features.
    /// When present the score is the accuracy given up by not escalating,
    /// negated: P(this answer right) − P(strong right), in [−1, 1].
    #[serde(default)]
    pub strong_weights: Option<BTreeMap<String, f64>>,
}

impl AcceptModel {
    /// Whether it applies to `class`.
    pub fn covers(&self, class: &str) -> bool {
        self.classes.as_ref().is_none_or(|c| c.iter().any(|k| k == class))
    }

    /// Whether the score can depend on the answer (not just the bias): a model
    /// that cannot is better applied before the call, as a start tier.
    pub fn reads_output(&self) -> bool {
        self.weights
            .iter()
            .any(|(k, w)| k != "bias" && k != "ambiguity" && *w != 0.0)
    }

    /// Checks names and ranges; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let lo = if self.strong_weights.is_some() { -1.0 } else { 0.0 };
        if !(lo..=1.0).contains(&self.threshold) {
            return Err(("threshold".into(), format!("must be in [{lo}, 1]")));
        }
        let named = self.weights.iter().map(|kv| ("weights", kv));
        let strong = self.strong_weights.iter().flatten().map(|kv| ("strong_weights", kv));
        for (table, (k, w)) in named.chain(strong) {
            if !FEATURES.contains(&k.as_str()) {
                return Err((
                    format!("{table}.{k}"),
                    format!("unknown feature (known: {})", FEATURES.join(", ")),
                ));
            }
            if !w.is_finite() {
                return Err((format!("{table}.{k}"), "must be a finite number".into()));
            }
        }
        Ok(())
    }
}

impl RoutingConfig {
    /// Validates ranges; the error is `(key under routing, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.policy_version.trim().is_empty() {
            return Err(("policy_version".into(), "must not be empty".into()));
        }
        for (i, r) in self.start_rules.iter().enumerate() {
            if let Some(a) = r.max_ambiguity
                && !(0.0..=1.0).contains(&a)
            {
                return Err((format!("start_rules[{i}].max_ambiguity"), "must be in [0, 1]".into()));
            }
        }
        for (i, m) in self.accept_models.iter().enumerate() {
            m.validate().map_err(|(k, r)| (format!("accept_models[{i}].{k}"), r))?;
        }
        for (tier, rule) in &self.accept {
            if !(0.0..=1.0).contains(&rule.min_confidence) {
                return Err((format!("accept.{tier}.min_confidence"), "must be in [0, 1]".into()));
            }
            for (class, t) in &rule.by_class {
                if !(0.0..=1.0).contains(t) {
                    return Err((format!("accept.{tier}.by_class.{class}"), "must be in [0, 1]".into()));
                }
            }
        }
        Ok(())
    }
}
