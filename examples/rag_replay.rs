//! Replays the extraction's tier zero over recorded retrievals: the same
//! code the router runs (`tier_zero`), without the live system, so a change
//! to the rules is seen on the dev questions in seconds.
//!
//! ```sh
//! # after `upshift eval rag ... --json > run.json` on a database D:
//! jq -c '.records[] | {id, job}' run.json > jobs.jsonl
//! psql D -Atc "SELECT json_build_object('job', job_id, 'retrieval', output::json)
//!              FROM steps WHERE name = 'retrieve' AND output IS NOT NULL" > retrievals.jsonl
//! cargo run --example rag_replay -- eval/pg15-rag.jsonl jobs.jsonl retrievals.jsonl
//! ```
//!
//! Prints each defended answer (right or wrong) with what the evidence
//! rules weigh (how far the closest sentence is ahead of the answer's, how
//! many of the question's words its sentence holds, the best rival), each
//! right answer held back with its findings, and per split how many tier
//! zero defends and how many of those are wrong.

use std::collections::{BTreeMap, HashMap};
use upshift_shared::config::Config;
use upshift_shared::verify::rag::extractive::{ZeroFloors, tier_zero};
use upshift_shared::verify::rag::text::contains_span;
use upshift_shared::verify::rag::{Retrieval, RetrievalFloor, check_retrieval};

fn lines(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [questions, jobs, retrievals] = args.as_slice() else {
        eprintln!("usage: rag_replay QUESTIONS.jsonl JOBS.jsonl RETRIEVALS.jsonl");
        std::process::exit(2);
    };
    let cfg = Config::load(None).expect("the embedded defaults load");
    let (floor, zero_floors) = (RetrievalFloor::from(&cfg.rag), ZeroFloors::from(&cfg.rag));
    let retrieval: HashMap<String, Retrieval> = lines(retrievals)
        .into_iter()
        .filter_map(|v| {
            let r: Retrieval = serde_json::from_value(v["retrieval"].clone()).ok()?;
            Some((v["job"].as_str()?.to_string(), r))
        })
        .collect();
    let job_of: HashMap<String, String> = lines(jobs)
        .into_iter()
        .filter_map(|v| Some((v["id"].as_str()?.to_string(), v["job"].as_str()?.to_string())))
        .collect();
    let mut per_split: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for q in lines(questions) {
        let (id, split) = (
            q["id"].as_str().unwrap_or_default(),
            q["split"].as_str().unwrap_or_default(),
        );
        let Some(r) = job_of.get(id).and_then(|j| retrieval.get(j)) else {
            continue;
        };
        let question = q["question"].as_str().unwrap_or_default();
        let answers: Vec<&str> = q["answers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        let entry = per_split.entry(split.to_string()).or_default();
        entry.0 += 1;
        if check_retrieval(r, floor).is_some() {
            continue;
        }
        let zero = tier_zero(question, r, zero_floors);
        let right = answers.iter().any(|a| contains_span(&zero.answer, a));
        if zero.findings.is_empty() {
            entry.1 += 1;
            entry.2 += usize::from(!right);
            println!(
                "{split} {id} {} `{}` sim {:.3} margin {:?}",
                if right { "right" } else { "WRONG" },
                zero.answer,
                zero.similarity.unwrap_or(0.0),
                zero.margin
            );
            diagnose(question, &zero.answer, r);
        } else if right {
            let codes: Vec<String> = zero
                .findings
                .iter()
                .map(|f| format!("{}: {}", f.code.as_str(), f.detail))
                .collect();
            println!("{split} {id} held back right `{}`: {}", zero.answer, codes.join("; "));
        }
    }
    for (split, (n, defended, wrong)) in per_split {
        println!("{split}: {n} questions, {defended} defended, {wrong} wrong");
    }
}

/// Prints what the evidence rules weigh for `answer`.
fn diagnose(question: &str, answer: &str, r: &Retrieval) {
    use upshift_shared::verify::rag::extractive::{candidates, locate, rival};
    use upshift_shared::verify::rag::text::content_words;
    let best = r
        .sentences
        .iter()
        .filter(|s| s.text.split_whitespace().count() >= 4)
        .map(|s| s.similarity)
        .fold(0.0f32, f32::max);
    let chosen = locate(answer, r).map(|e| (e.similarity.unwrap_or(0.0), e.sentence.clone()));
    let q: Vec<String> = content_words(question);
    let cover = |text: &str| {
        let w = content_words(text);
        q.iter().filter(|x| w.contains(x)).count()
    };
    let riv = rival(answer, &candidates(question, r), r);
    println!(
        "    gap {:.3} cover {} / {} rival {:?}",
        best - chosen.as_ref().map_or(0.0, |c| c.0),
        chosen.as_ref().map_or(0, |c| cover(&format!("{answer} {}", c.1))),
        q.len(),
        riv.map(|(n, e)| (n.clone(), e.similarity, cover(&format!("{n} {}", e.sentence))))
    );
}
