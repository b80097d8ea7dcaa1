use super::*;
use crate::config::Config;

fn cfg() -> Config {
    Config::from_toml_over_defaults(crate::config::REPLAY_TOML).unwrap()
}

fn models(a: &str, b: &str, c: &str) -> TierModels {
    TierModels {
        small: a.into(),
        medium: b.into(),
        strong: c.into(),
    }
}

fn start_tier_of(r: &RoutingConfig, task: TaskType, ambiguity: f64, blast: BlastRadius) -> StartDecision {
    start_tier(
        r,
        StepRisk {
            task,
            class: task.as_str(),
            ambiguity,
            blast,
        },
    )
}

#[test]
fn the_essays_rule() {
    let c = cfg();
    let r = &c.routing;
    let d = start_tier_of(r, TaskType::Extract, 0.1, BlastRadius::High);
    assert_eq!(
        (d.tier, d.reasons.clone()),
        (Tier::Strong, vec![ReasonCode::HighBlastRadius])
    );
    assert_eq!(
        start_tier_of(r, TaskType::Classify, 0.29, BlastRadius::Low).tier,
        Tier::Small
    );
    assert_eq!(
        start_tier_of(r, TaskType::Classify, 0.3, BlastRadius::Low).tier,
        Tier::Strong
    );
    assert_eq!(
        start_tier_of(r, TaskType::Summarise, 0.4, BlastRadius::Medium).tier,
        Tier::Medium
    );
    assert_eq!(
        start_tier_of(r, TaskType::Rewrite, 0.5, BlastRadius::Low).tier,
        Tier::Strong
    );
    // rag: planning starts small, drafting on medium (the critique's tier is
    // set by the router, one below the synthesiser's, so no rule names it).
    assert_eq!(
        start_tier_of(r, TaskType::RetrievePlan, 0.2, BlastRadius::Low).tier,
        Tier::Small
    );
    assert_eq!(
        start_tier_of(r, TaskType::Synthesise, 0.5, BlastRadius::Low).tier,
        Tier::Medium
    );
    let d = start_tier_of(r, TaskType::Critique, 0.0, BlastRadius::Low);
    assert_eq!((d.tier, d.rule), (Tier::Strong, None));
}

#[test]
fn passing_attempt_is_accepted_and_low_confidence_escalates() {
    let c = cfg();
    let m = models("a", "b", "c");
    let ev = AttemptEvidence {
        tier: Tier::Small,
        class: "answer",
        input: "",
        output: "",
        ambiguity: 0.1,
        findings: &[],
        confidence: Some(0.9),
        failure: None,
        budget_left_usd: None,
        next_call_usd: None,
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
        class: "answer",
        input: "",
        output: "",
        ambiguity: 0.1,
        findings: &findings,
        confidence: None,
        failure: None,
        budget_left_usd: None,
        next_call_usd: None,
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
    // The top tier cannot defend it either: unresolved, not accepted.
    assert_eq!(
        decide(&c.routing, &m, &top),
        Decision::Unresolved {
            findings: findings.clone()
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
        class: "answer",
        input: "",
        output: "",
        ambiguity: 0.1,
        findings: &[],
        confidence: None,
        failure: Some(ReasonCode::ProviderError),
        budget_left_usd: Some(0.0),
        next_call_usd: None,
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

#[test]
fn a_fitted_model_decides_and_class_rules_pick_start_tiers() {
    let mut c = cfg();
    c.routing.start_rules.insert(
        0,
        StartRule {
            blast_radius: None,
            tasks: None,
            classes: Some(vec!["law".into()]),
            max_ambiguity: None,
            tier: Tier::Strong,
        },
    );
    let d = start_tier(
        &c.routing,
        StepRisk {
            task: TaskType::Classify,
            class: "law",
            ambiguity: 0.1,
            blast: BlastRadius::Low,
        },
    );
    assert_eq!((d.tier, d.rule), (Tier::Strong, Some(0)));
    c.routing.accept_models.push(AcceptModel {
        tier: Tier::Small,
        classes: Some(vec!["math".into()]),
        threshold: 0.5,
        weights: [("bias".to_string(), 2.0), ("arithmetic_mismatch".to_string(), -9.0)].into(),
        strong_weights: None,
    });
    let m = models("a", "b", "c");
    let small = [Finding::new(ReasonCode::AnswerFormat, "x")];
    let ev = AttemptEvidence {
        tier: Tier::Small,
        class: "math",
        input: "",
        output: "#### 4",
        ambiguity: 0.1,
        findings: &small,
        confidence: None,
        failure: None,
        budget_left_usd: None,
        next_call_usd: None,
    };
    // A finding the model learned to forgive: accepted, finding kept open.
    assert_eq!(
        decide(&c.routing, &m, &ev),
        Decision::Accept {
            open_findings: small.to_vec()
        }
    );
    let bad = [Finding::new(ReasonCode::ArithmeticMismatch, "2+2=5")];
    let ev = AttemptEvidence { findings: &bad, ..ev };
    assert_eq!(
        decide(&c.routing, &m, &ev),
        Decision::Escalate {
            to: Tier::Medium,
            reasons: vec![ReasonCode::ArithmeticMismatch, ReasonCode::LowDefensibility],
            skipped: vec![]
        }
    );
    // Other classes keep the plain rule.
    let ev = AttemptEvidence {
        class: "other",
        findings: &[],
        ..ev
    };
    assert_eq!(decide(&c.routing, &m, &ev), Decision::Accept { open_findings: vec![] });
}

#[test]
fn a_low_confidence_top_answer_is_unresolved_and_untrusted_classes_never_pass() {
    let mut c = cfg();
    let m = models("a", "b", "c");
    c.routing.accept.insert(
        Tier::Strong,
        AcceptRule {
            min_confidence: 0.5,
            by_class: [("critic".to_string(), NEVER_TRUSTED)].into(),
        },
    );
    let ev = AttemptEvidence {
        tier: Tier::Strong,
        class: "answer",
        input: "",
        output: "x",
        ambiguity: 0.1,
        findings: &[],
        confidence: Some(0.4),
        failure: None,
        budget_left_usd: None,
        next_call_usd: None,
    };
    let Decision::Unresolved { findings } = decide(&c.routing, &m, &ev) else {
        panic!("a low-confidence top answer is not defended");
    };
    assert_eq!(findings[0].code, ReasonCode::LowConfidence);
    assert!(findings[0].detail.contains("0.400"), "{findings:?}");
    let sure = AttemptEvidence {
        confidence: Some(0.9),
        ..ev.clone()
    };
    assert_eq!(
        decide(&c.routing, &m, &sure),
        Decision::Accept { open_findings: vec![] }
    );
    // An untrusted class is not accepted even at full confidence.
    let critic = AttemptEvidence {
        class: "critic",
        confidence: Some(1.0),
        ..ev
    };
    assert!(matches!(decide(&c.routing, &m, &critic), Decision::Unresolved { .. }));
    assert_eq!(min_confidence(&c.routing, Tier::Strong, "critic"), NEVER_TRUSTED);
    assert_eq!(min_confidence(&c.routing, Tier::Strong, "answer"), 0.5);
}

#[test]
fn escalation_skips_tiers_that_never_trust_the_class() {
    let mut c = cfg();
    let m = models("a", "b", "c");
    c.routing.accept.insert(
        Tier::Medium,
        AcceptRule {
            min_confidence: 0.5,
            by_class: [("x".to_string(), NEVER_TRUSTED)].into(),
        },
    );
    assert_eq!(
        next_useful_tier(&c.routing, &m, Tier::Small, "x"),
        Some((Tier::Strong, vec![Tier::Medium]))
    );
    assert_eq!(
        next_useful_tier(&c.routing, &m, Tier::Small, "y"),
        Some((Tier::Medium, vec![]))
    );
    assert_eq!(first_useful_tier(&c.routing, Tier::Medium, "x"), Some(Tier::Strong));
    c.routing
        .accept
        .get_mut(&Tier::Strong)
        .unwrap()
        .by_class
        .insert("x".into(), NEVER_TRUSTED);
    assert_eq!(next_useful_tier(&c.routing, &m, Tier::Small, "x"), None);
    assert_eq!(first_useful_tier(&c.routing, Tier::Small, "x"), Some(Tier::Small));
}

#[test]
fn one_budget_rule_decides_every_next_call() {
    assert!(affordable(None, Some(5.0)), "no budget, no limit");
    assert!(affordable(Some(1.0), Some(1.0)));
    assert!(affordable(Some(1.0), None), "an unknown cost counts as free");
    assert!(!affordable(Some(0.5), Some(1.0)));
    assert!(!affordable(Some(0.0), None), "a spent budget allows nothing");
    assert!(!affordable(Some(0.0), Some(0.0)));
}
