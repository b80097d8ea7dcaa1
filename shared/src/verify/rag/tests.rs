use super::*;

fn passage(id: &str, score: f32, text: &str) -> Passage {
    Passage {
        passage_id: id.into(),
        document_id: id.split('#').next().unwrap().into(),
        title: "Write Ahead Log".into(),
        score,
        text: text.into(),
    }
}

fn retrieval() -> Retrieval {
    Retrieval {
        terms: "wal_level".into(),
        passages: vec![
            passage(
                "wal.html#1",
                0.5,
                "wal_level determines how much information is written to the WAL. The default value is replica. \
                 wal_buffers is 16MB by default.",
            ),
            passage("vacuum.html#0", 0.2, "VACUUM reclaims storage occupied by dead tuples."),
        ],
    }
}

fn codes(f: &[Finding]) -> Vec<ReasonCode> {
    f.iter().map(|f| f.code).collect()
}

#[test]
fn retrieval_needs_enough_passages_over_the_floor() {
    let floor = RetrievalFloor {
        min_passages: 2,
        min_score: 0.1,
    };
    assert!(check_retrieval(&retrieval(), floor).is_none());
    let strict = RetrievalFloor {
        min_passages: 2,
        min_score: 0.3,
    };
    assert_eq!(
        check_retrieval(&retrieval(), strict).unwrap().code,
        ReasonCode::RetrievalEmpty
    );
}

#[test]
fn facts_must_cite_retrieved_passages_and_be_supported() {
    let r = retrieval();
    let q = "Which setting controls how much is written to the WAL?";
    let good = r#"{"facts":[{"fact":"wal_level determines how much information is written to the WAL","passage_id":"wal.html#1"}]}"#;
    assert!(check_facts(good, &r, q).is_empty(), "{:?}", check_facts(good, &r, q));
    let bad_id = r#"[{"fact":"wal_level determines how much is written to the WAL","passage_id":"nope#3"}]"#;
    assert_eq!(codes(&check_facts(bad_id, &r, q)), vec![ReasonCode::CitationMissing]);
    let made_up =
        r#"[{"fact":"checkpoints of the WAL happen every five minutes by default","passage_id":"wal.html#1"}]"#;
    assert_eq!(codes(&check_facts(made_up, &r, q)), vec![ReasonCode::UnsupportedClaims]);
    let q2 = "What does wal_level do to autovacuum_naptime?";
    assert_eq!(codes(&check_facts(good, &r, q2)), vec![ReasonCode::UnresolvedEntities]);
    assert!(check_facts("not json", &r, q).is_empty(), "left to the schema verifier");
}

#[test]
fn answers_need_citations_support_and_agreeing_evidence() {
    let r = retrieval();
    let good = "The wal_level setting determines how much information is written to the WAL [wal.html#1]. \
                Its default value is replica. [wal.html#1]";
    assert!(check_answer(good, &r).is_empty(), "{:?}", check_answer(good, &r));
    let uncited = "The wal_level setting determines how much information is written to the WAL.";
    assert_eq!(codes(&check_answer(uncited, &r)), vec![ReasonCode::CitationMissing]);
    let foreign = "The wal_level setting determines the information written [other.html#4].";
    assert_eq!(
        codes(&check_answer(foreign, &r)),
        vec![ReasonCode::CitationMissing, ReasonCode::CitationMissing]
    );
    let unsupported = "Checkpoints are spread over five minutes by the background writer [wal.html#1].";
    assert_eq!(
        codes(&check_answer(unsupported, &r)),
        vec![ReasonCode::UnsupportedClaims]
    );
    assert_eq!(codes(&check_answer("  ", &r)), vec![ReasonCode::AnswerFormat]);

    let mut r2 = retrieval();
    r2.passages
        .push(passage("old.html#0", 0.4, "The default value of wal_buffers is 64 MB."));
    let conflicting = "The default value of wal_buffers is 16MB [wal.html#1] or 64 MB [old.html#0].";
    assert_eq!(
        codes(&check_answer(conflicting, &r2)),
        vec![ReasonCode::ConflictingEvidence]
    );
}

#[test]
fn ambiguity_rises_with_unresolved_entities_flat_scores_and_conflicts() {
    let r = retrieval();
    let (clear, _) = ambiguity("How much does wal_level write?", &r, 0.1);
    let (unknown, detail) = ambiguity("How much does max_wal_senders write?", &r, 0.1);
    assert!(unknown > clear + 0.3, "{clear} {unknown} {detail}");
    let mut flat = retrieval();
    flat.passages[1].score = 0.5;
    assert!(ambiguity("How much does wal_level write?", &flat, 0.1).0 > clear);
    assert_eq!(ambiguity("x", &r, 0.9).0, 0.9, "never below the base estimate");
    let v = Verdict::parse(r#"{"verdict":"unsupported","reason":"no"}"#).unwrap();
    assert!(v.rejects());
}
