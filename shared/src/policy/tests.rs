use super::*;
use crate::config::Config;

fn cfg() -> Config {
    Config::from_toml_over_defaults("").unwrap()
}

fn models(a: &str, b: &str, c: &str) -> TierModels {
    TierModels {
        small: a.into(),
        medium: b.into(),
        strong: c.into(),
    }
}

#[test]
fn the_essays_rule() {
    let c = cfg();
    let r = &c.routing;
    let d = start_tier(r, TaskType::Extract, 0.1, BlastRadius::High);
    assert_eq!(
        (d.tier, d.reasons.clone()),
        (Tier::Strong, vec![ReasonCode::HighBlastRadius])
    );
    assert_eq!(
        start_tier(r, TaskType::Classify, 0.29, BlastRadius::Low).tier,
        Tier::Small
    );
    assert_eq!(
        start_tier(r, TaskType::Classify, 0.3, BlastRadius::Low).tier,
        Tier::Strong
    );
    assert_eq!(
        start_tier(r, TaskType::Summarise, 0.4, BlastRadius::Medium).tier,
        Tier::Medium
    );
    assert_eq!(
        start_tier(r, TaskType::Rewrite, 0.5, BlastRadius::Low).tier,
        Tier::Strong
    );
    let d = start_tier(r, TaskType::Synthesise, 0.0, BlastRadius::Low);
    assert_eq!((d.tier, d.rule), (Tier::Strong, None));
}

#[test]
fn passing_attempt_is_accepted_and_low_confidence_escalates() {
    let c = cfg();
    let m = models("a", "b", "c");
    let ev = AttemptEvidence {
        tier: Tier::Small,
        findings: &[],
        confidence: Some(0.9),
        failure: None,
        budget_left_usd: None,
    };
    assert_eq!(decide(&c.routing, &m, &ev), Decision::Accept { open_findings: vec![] });
    let ev = AttemptEvidence {
        confidence: Some(0.2),
        ..ev
    };
    assert_eq!(
        decide(&c.routing, &m, &ev),
        Decision::Escalate {
            to: Tier::Medium,
            reasons: vec![ReasonCode::LowConfidence],
            skipped: vec![]
        }
    );
}

#[test]
fn findings_escalate_skipping_same_model_and_top_tier_follows_policy() {
    let mut c = cfg();
    let m = models("a", "a", "c");
    let findings = vec![Finding::new(ReasonCode::ArithmeticMismatch, "2+2=5")];
    let ev = AttemptEvidence {
        tier: Tier::Small,
        findings: &findings,
        confidence: None,
        failure: None,
        budget_left_usd: None,
    };
    assert_eq!(
        decide(&c.routing, &m, &ev),
        Decision::Escalate {
            to: Tier::Strong,
            reasons: vec![ReasonCode::ArithmeticMismatch],
            skipped: vec![Tier::Medium]
        }
    );
    let top = AttemptEvidence {
        tier: Tier::Strong,
        ..ev.clone()
    };
    assert_eq!(
        decide(&c.routing, &m, &top),
        Decision::Accept {
            open_findings: findings.clone()
        }
    );
    c.routing.at_top_tier = TopTierAction::Fail;
    assert_eq!(
        decide(&c.routing, &m, &top),
        Decision::Fail {
            reasons: vec![ReasonCode::ArithmeticMismatch]
        }
    );
}

#[test]
fn budget_and_provider_failures() {
    let c = cfg();
    let m = models("a", "b", "c");
    let ev = AttemptEvidence {
        tier: Tier::Small,
        findings: &[],
        confidence: None,
        failure: Some(ReasonCode::ProviderError),
        budget_left_usd: Some(0.0),
    };
    assert_eq!(
        decide(&c.routing, &m, &ev),
        Decision::Fail {
            reasons: vec![ReasonCode::ProviderError, ReasonCode::BudgetExhausted]
        }
    );
    let ev = AttemptEvidence {
        budget_left_usd: Some(1.0),
        ..ev
    };
    assert!(matches!(
        decide(&c.routing, &m, &ev),
        Decision::Escalate { to: Tier::Medium, .. }
    ));
}
