use super::*;
use crate::reasons::ReasonCode;
use crate::verify::Finding;

fn passage(id: &str, score: f32, text: &str) -> Passage {
    Passage {
        passage_id: id.into(),
        document_id: id.split('#').next().unwrap().into(),
        title: "Write Ahead Log".into(),
        score,
        text: text.into(),
        lexical: Some(score),
        similarity: None,
        defines: None,
    }
}

fn retrieval() -> Retrieval {
    Retrieval {
        terms: "wal_level".into(),
        mode: "lexical".into(),
        sentences: Vec::new(),
        passages: vec![
            passage(
                "wal.html#1",
                0.5,
                "`wal_level` (`enum`) wal_level determines how much information is written to the WAL. The default \
                 value is replica. `wal_buffers` (`integer`) is 16MB by default.",
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
        min_similarity: 0.4,
    };
    assert!(check_retrieval(&retrieval(), floor).is_none());
    let strict = RetrievalFloor {
        min_passages: 2,
        min_score: 0.3,
        min_similarity: 0.4,
    };
    assert_eq!(
        check_retrieval(&retrieval(), strict).unwrap().code,
        ReasonCode::RetrievalEmpty
    );
    // With sentence similarities the floor is on the best sentence.
    let mut hybrid = retrieval();
    hybrid.sentences = vec![Sentence {
        passage_id: "wal.html#1".into(),
        text: "wal_level determines how much information is written to the WAL.".into(),
        similarity: 0.35,
    }];
    let f = check_retrieval(&hybrid, floor).unwrap();
    assert!(f.detail.contains("0.35"), "{f:?}");
    hybrid.sentences[0].similarity = 0.7;
    assert!(
        check_retrieval(&hybrid, strict).is_none(),
        "the lexical rank no longer decides"
    );
    // A definition looked up for a candidate is not the search's: it
    // neither makes up the passages nor lifts the best sentence.
    let mut looked_up = hybrid.clone();
    looked_up.sentences[0].similarity = 0.35;
    looked_up.passages.truncate(1);
    let mut definition = passage("wal.html#2", 0.0, "`wal_buffers` (`integer`) The WAL's shared memory.");
    definition.defines = Some("wal_buffers".into());
    looked_up.passages.push(definition);
    looked_up.sentences.push(Sentence {
        passage_id: "wal.html#2".into(),
        text: "The WAL's shared memory.".into(),
        similarity: 0.9,
    });
    let f = check_retrieval(&looked_up, floor).unwrap();
    assert!(f.detail.contains("found 1 passages"), "{f:?}");
    looked_up
        .passages
        .insert(1, passage("vacuum.html#0", 0.2, "VACUUM reclaims storage."));
    let f = check_retrieval(&looked_up, floor).unwrap();
    assert!(f.detail.contains("0.35"), "{f:?}");
    assert_eq!(looked_up.best_similarity(), Some(0.35));
}

#[test]
fn answers_name_what_the_question_asks_for() {
    let r = retrieval();
    let q = "Which setting controls how much information is written to the WAL?";
    let wal_intro = "WAL is about how much information is written [wal.html#1].";
    assert_eq!(
        check_answer_type(wal_intro, &r, q).map(|f| f.code),
        Some(ReasonCode::AnswerTypeMismatch)
    );
    assert!(check_answer_type("It is wal_level [wal.html#1].", &r, q).is_none());
    // A setting named by the answer but not by what it cites does not count.
    assert!(check_answer_type("It is wal_level [vacuum.html#0].", &r, q).is_some());
    assert!(
        check_answer_type("Anything.", &r, "What does VACUUM do?").is_none(),
        "free-form"
    );
}

const FLOORS: SpanFloors = SpanFloors {
    min_relevance: 0.4,
    min_margin: 0.0,
};

#[test]
fn a_chosen_span_must_be_real_typed_and_about_the_question() {
    let r = retrieval();
    let q = "Which setting controls how much information is written to the WAL?";
    assert!(check_span("wal_level", &r, q, FLOORS, None).is_empty());
    assert_eq!(
        codes(&check_span(extractive::NO_ANSWER, &r, q, FLOORS, None)),
        vec![ReasonCode::NoAnswer]
    );
    assert_eq!(
        codes(&check_span("fsync", &r, q, FLOORS, None)),
        vec![ReasonCode::CitationMissing]
    );
    // A command from a passage that never mentions the WAL.
    assert_eq!(
        codes(&check_span("VACUUM", &r, q, FLOORS, None)),
        vec![
            ReasonCode::AnswerTypeMismatch,
            ReasonCode::UnresolvedEntities,
            ReasonCode::EvidenceDisagrees
        ]
    );
    // A real setting, but not the one the evidence ranks first.
    assert_eq!(
        codes(&check_span("wal_buffers", &r, q, FLOORS, None)),
        vec![ReasonCode::EvidenceDisagrees]
    );
    // Tier zero's first-ranked candidate (the step's first label) is the
    // one a model must agree with, whatever the evidence order says.
    assert!(check_span("wal_buffers", &r, q, FLOORS, Some("wal_buffers")).is_empty());
    let f = check_span("wal_level", &r, q, FLOORS, Some("wal_buffers"));
    assert_eq!(codes(&f), vec![ReasonCode::EvidenceDisagrees]);
    assert!(f[0].detail.contains("`wal_buffers` first"), "{f:?}");
    let q2 = "Which setting of MySQL controls how much is written to the WAL?";
    assert_eq!(
        codes(&check_span("wal_level", &r, q2, FLOORS, None)),
        vec![ReasonCode::UnresolvedEntities]
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
    let wrong_number = "The default value of wal_buffers is 64MB [wal.html#1].";
    assert_eq!(
        codes(&check_answer(wrong_number, &r)),
        vec![ReasonCode::UnsupportedClaims]
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

#[test]
fn a_setting_must_be_defined_as_one_and_a_default_stated_as_one() {
    let floors = SpanFloors {
        min_relevance: 0.0,
        min_margin: -1.0,
    };
    let r = Retrieval {
        terms: "x".into(),
        mode: "lexical".into(),
        sentences: Vec::new(),
        passages: vec![
            passage(
                "libpq-connect.html#53",
                0.5,
                "`sslrootcert` This parameter specifies the name of a file containing SSL certificate authority \
                 (CA) certificate(s).",
            ),
            passage(
                "runtime-config-connection.html#9",
                0.4,
                "`ssl_cert_file` (`string`) Specifies the name of the file containing the SSL server certificate. \
                 The default is server.crt.",
            ),
            passage(
                "runtime-config-resource.html#7",
                0.3,
                "A buffer descriptor costs about 64 bytes, per increment in `temp_buffers`.",
            ),
            passage(
                "runtime-config-statistics.html#2",
                0.3,
                "`track_activity_query_size` (`integer`) The default value is 1024 bytes.",
            ),
        ],
    };
    let q = "Which setting specifies the name of the file containing the SSL server certificate?";
    let f = check_span("sslrootcert", &r, q, floors, None);
    assert!(codes(&f).contains(&ReasonCode::AnswerTypeMismatch), "{f:?}");
    let f = check_span("ssl_cert_file", &r, q, floors, None);
    assert!(!codes(&f).contains(&ReasonCode::AnswerTypeMismatch), "{f:?}");
    // A setting has a definition; a name used in code does not.
    assert!(extractive::judge::defined("ssl_cert_file", &r) && !extractive::judge::defined("sslrootcert", &r));
    let q = "What is the default amount of memory reserved for each session's command text?";
    let f = check_span("64 bytes", &r, q, floors, None);
    assert!(codes(&f).contains(&ReasonCode::AnswerTypeMismatch), "{f:?}");
    let f = check_span("1024 bytes", &r, q, floors, None);
    assert!(!codes(&f).contains(&ReasonCode::AnswerTypeMismatch), "{f:?}");
}

#[test]
fn a_program_is_the_subject_of_its_page_not_an_argument_on_it() {
    let floors = SpanFloors {
        min_relevance: 0.0,
        min_margin: -1.0,
    };
    let mut page = passage(
        "app-createuser.html#1",
        0.5,
        "`createuser` is a wrapper around the SQL command `CREATE ROLE`. Options `createuser` accepts the \
         following command-line arguments: `username` Specifies the name of the database user to be created.",
    );
    page.title = "createuser".into();
    let r = Retrieval {
        terms: "x".into(),
        mode: "lexical".into(),
        sentences: Vec::new(),
        passages: vec![page.clone()],
    };
    // An argument of the program once defended as the answer.
    let q = "Which utility defines a new database user account from the command line?";
    let f = check_span("username", &r, q, floors, None);
    assert!(codes(&f).contains(&ReasonCode::AnswerTypeMismatch), "{f:?}");
    let f = check_span("createuser", &r, q, floors, None);
    assert!(!codes(&f).contains(&ReasonCode::AnswerTypeMismatch), "{f:?}");
    // Prose presents a program too, off its own page.
    page.title = "Backup".into();
    assert!(presents_program(&page, "createuser"));
    let other = passage("x.html#0", 0.1, "Run the `db_dump` utility nightly.");
    assert!(presents_program(&other, "db_dump") && !presents_program(&other, "nightly"));
}

/// A retrieval whose sentences carry the given similarities.
fn scored(passages: Vec<Passage>, sentences: &[(&str, &str, f32)]) -> Retrieval {
    Retrieval {
        terms: "x".into(),
        mode: "hybrid".into(),
        passages,
        sentences: sentences
            .iter()
            .map(|(id, text, similarity)| Sentence {
                passage_id: (*id).into(),
                text: (*text).into(),
                similarity: *similarity,
            })
            .collect(),
    }
}

/// A score that weighs what the rules of version 8 weighed: a clear lead,
/// no closer sentence saying something else, no rival holding more of the
/// question's words.
fn zero_floors() -> crate::config::ZeroScore {
    let weights = [
        ("similarity", 4.0),
        ("margin", 20.0),
        ("closer_gap", -30.0),
        ("rival_coverage", -10.0),
    ];
    crate::config::ZeroScore {
        bias: -4.0,
        weights: weights.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        threshold: 0.5,
        sentence_threshold: 0.5,
        fitted: "a test model".into(),
    }
}

/// Asserts tier zero held its answer back on its score.
fn assert_held_back(zero: &extractive::ZeroChoice) {
    assert!(
        zero.span_findings.is_empty() && zero.findings.iter().any(|f| f.code == ReasonCode::LowConfidence),
        "{zero:?}"
    );
}

#[test]
fn tier_zero_defends_a_name_only_when_the_evidence_singles_it_out() {
    // Two settings of one passage: the memory setting's sentence scored
    // 0.79, the one the question describes 0.759, with more of its words.
    let text = "`autovacuum_work_mem` (`integer`)\nSpecifies the maximum amount of memory to be used by each \
                autovacuum worker process.\n`autovacuum_max_workers` (`integer`)\nSpecifies the maximum number \
                of autovacuum processes that may be running at any one time.";
    let p = || vec![passage("runtime-config-autovacuum.html#1", 0.5, text)];
    let q = "Which setting sets the maximum number of simultaneously running autovacuum worker processes?";
    let memory = "Specifies the maximum amount of memory to be used by each autovacuum worker process.";
    let number = "Specifies the maximum number of autovacuum processes that may be running at any one time.";
    let near = scored(
        p(),
        &[
            ("runtime-config-autovacuum.html#1", memory, 0.79),
            ("runtime-config-autovacuum.html#1", number, 0.759),
        ],
    );
    let zero = extractive::tier_zero(q, &near, &Default::default(), &zero_floors());
    assert_eq!(zero.answer, "autovacuum_work_mem");
    assert_held_back(&zero);
    assert!(zero.features.unwrap().named()["rival_coverage"].as_f64().unwrap() > 0.0);
    // Clearly ahead, the same answer is defended.
    let clear = scored(
        p(),
        &[
            ("runtime-config-autovacuum.html#1", memory, 0.85),
            ("runtime-config-autovacuum.html#1", number, 0.70),
        ],
    );
    let zero = extractive::tier_zero(q, &clear, &Default::default(), &zero_floors());
    assert!(zero.findings.is_empty(), "{:?}", zero.findings);

    // The closest sentence belongs to a name the passage
    // before holds; the next row's name is not the answer.
    let row = "Converts a write-ahead log location to the name of the WAL file holding that location.\n|\n\
               `log_file_name_offset` ( `lsn` `lsn_t` ) → `record`\nConverts a write-ahead log location to a \
               WAL file name and byte offset within that file.\n|";
    let r = scored(
        vec![passage("functions-admin.html#14", 0.5, row)],
        &[
            (
                "functions-admin.html#14",
                "Converts a write-ahead log location to the name of the WAL file holding that location. |",
                0.92,
            ),
            (
                "functions-admin.html#14",
                "Converts a write-ahead log location to a WAL file name and byte offset within that file. |",
                0.876,
            ),
        ],
    );
    let q = "Which function converts a write-ahead log location to the name of the WAL file holding it?";
    let zero = extractive::tier_zero(q, &r, &Default::default(), &zero_floors());
    assert_eq!(zero.answer, "log_file_name_offset");
    assert_held_back(&zero);
    assert!(zero.features.unwrap().named()["closer_gap"].as_f64().unwrap() > 0.04);
}

#[test]
fn a_name_question_is_never_answered_by_a_heading_or_a_sentence() {
    // The passages hold no name at all: a heading and a description.
    let r = scored(
        vec![passage(
            "wal-intro.html#0",
            0.5,
            "Write-Ahead Logging (WAL)\nThis chapter explains how the write-ahead log is used to obtain efficient, reliable operation.",
        )],
        &[(
            "wal-intro.html#0",
            "This chapter explains how the write-ahead log is used to obtain efficient, reliable operation.",
            0.9,
        )],
    );
    for q in [
        "Which setting controls how much is written to the write-ahead log?",
        "We lose data after crashes. What option makes the write-ahead log more reliable?",
    ] {
        let zero = extractive::tier_zero(q, &r, &Default::default(), &zero_floors());
        assert!(
            !zero.span_findings.is_empty() && !zero.findings.is_empty(),
            "{q}: {zero:?}"
        );
        assert!(
            zero.findings
                .iter()
                .any(|f| matches!(f.code, ReasonCode::AnswerTypeMismatch | ReasonCode::NoAnswer)),
            "{q}: {:?}",
            zero.findings
        );
    }
}

#[test]
fn a_sentence_answer_is_held_to_the_sentence_threshold() {
    let text = "To leave the interpreter, type `quit()` at the prompt and press Enter.";
    let r = scored(
        vec![passage("tutorial.html#0", 0.5, text)],
        &[("tutorial.html#0", text, 0.9)],
    );
    let q = "how do I leave the interactive interpreter";
    let mut model = crate::config::ZeroScore {
        bias: 0.0,
        weights: [("similarity".to_string(), 10.0)].into_iter().collect(),
        threshold: 0.5,
        sentence_threshold: 2.0,
        fitted: "t".into(),
    };
    // The names' threshold is met, but a sentence has its own, never met.
    let zero = extractive::tier_zero(q, &r, &Default::default(), &model);
    assert!(zero.score.is_some_and(|s| s > 0.5) && zero.threshold > 1.0, "{zero:?}");
    assert_held_back(&zero);
    assert!(
        zero.findings
            .iter()
            .any(|f| f.detail.contains("defends no sentence alone")),
        "{zero:?}"
    );
    // A fit that met the bound for sentences defends it.
    model.sentence_threshold = 0.5;
    let zero = extractive::tier_zero(q, &r, &Default::default(), &model);
    assert!(zero.findings.is_empty(), "{zero:?}");
}

#[test]
fn a_value_question_gets_a_value_not_held_to_a_stated_default() {
    let r = Retrieval {
        passages: vec![passage(
            "client.html#3",
            0.5,
            "`session_replication_role` (`enum`) Controls firing of replication-related triggers. Setting it to \
             `replica` skips ordinary triggers. The default is `origin`.",
        )],
        ..retrieval()
    };
    let value = "doing a bulk load and I want to skip the triggers. what do I set session_replication_role to?";
    assert_eq!(question::classify(value), question::QuestionType::Value);
    let found = extractive::candidates(value, &r);
    assert!(found.iter().any(|c| c == "replica"), "{found:?}");
    // A value need not be the default; a default question's answer must be.
    assert!(!codes(&check_span_hard("replica", &r, value)).contains(&ReasonCode::AnswerTypeMismatch));
    let default = "what is session_replication_role set to by default?";
    assert!(codes(&check_span_hard("replica", &r, default)).contains(&ReasonCode::AnswerTypeMismatch));
    assert!(!codes(&check_span_hard("origin", &r, default)).contains(&ReasonCode::AnswerTypeMismatch));
}

#[test]
fn a_short_definition_line_among_the_best_sentences_offers_its_name() {
    // The term line alone is among the sentences most like the question;
    // eight longer sentences of another page rank above it.
    let filler: Vec<String> = (0..8)
        .map(|i| format!("Tables are processed one after another in step {i}."))
        .collect();
    let mut sentences: Vec<Sentence> = filler
        .iter()
        .enumerate()
        .map(|(i, t)| Sentence {
            passage_id: "other.html#0".into(),
            text: t.clone(),
            similarity: 0.9 - 0.01 * i as f32,
        })
        .collect();
    sentences.push(Sentence {
        passage_id: "app-vacuumdb.html#2".into(),
        text: "`--skip-locked`".into(),
        similarity: 0.7,
    });
    let r = Retrieval {
        mode: "hybrid".into(),
        passages: vec![
            passage("other.html#0", 0.5, &filler.join(" ")),
            passage("app-vacuumdb.html#2", 0.4, "`--skip-locked`"),
        ],
        sentences,
        ..retrieval()
    };
    let q = "some tables are locked by a long job. which option makes the tool move on without waiting?";
    let found = extractive::candidates(q, &r);
    assert!(found.iter().any(|c| c == "--skip-locked"), "{found:?}");
}
