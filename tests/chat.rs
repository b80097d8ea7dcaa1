//! The OpenAI-compatible door, driven by the official `openai` Python SDK
//! (tests/chat_client.py) and by curl: answers with the route in headers
//! and body, streaming, unresolved answers both ways, a budget stop, a
//! JSON schema, a collection's rag model, a bad key, a rate limit and a
//! wait that runs out.

use crate::rag::{ingest, widgets};
use crate::util::{Harness, Opts, eventually};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const KEY: &str = "sk-upshift-chat-test";
/// Every tier trusted for rag extraction and critique and for `extract`
/// (which the shipped calibration trusts on no local tier): the replayed
/// answers and the verifiers decide.
const TRUSTED: &str = "[routing.accept.small.by_class]\nrag_extract = 0.0\nrag_critique = 0.0\nextract = 0.0\n\
     [routing.accept.medium.by_class]\nrag_extract = 0.0\nrag_critique = 0.0\nextract = 0.0\n\
     [routing.accept.strong.by_class]\nrag_extract = 0.0\nrag_critique = 0.0\nextract = 0.0\n";
const TRAIN: &str = "A train travels 60 km per hour for 3 hours. How far does it go?";

/// Replay tiers answering from the chat, math and rag fixtures; the strong
/// tier takes 1.5 s an answer (so a one-second wait runs out on it).
fn models() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let sets: Vec<String> = ["chat_replay.csv", "replay.csv", "rag_replay.csv"]
        .iter()
        .map(|f| format!("\"{}\"", dir.join(f).display()))
        .collect();
    let model = |name: &str, price: f64, latency: u64| {
        format!(
            "[[models]]\nname = \"{name}\"\nusd_per_m_in = {price}\nusd_per_m_out = {price}\n\
             provider = {{ kind = \"replay\", datasets = [{}], column = \"{name}\", latency_ms = {latency} }}\n",
            sets.join(", ")
        )
    };
    format!(
        "{}{}{}[tiers]\nsmall = \"fx-small\"\nmedium = \"fx-medium\"\nstrong = \"fx-strong\"\n",
        model("fx-small", 0.2, 0),
        model("fx-medium", 2.0, 0),
        model("fx-strong", 20.0, 1500)
    )
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `curl` with the test key; returns (status, headers lower-cased, body).
async fn curl(url: &str, body: &Value, extra: &[&str]) -> (u16, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-N", "-D", "-", "-o", "-", "-w", "\n%{http_code}"])
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            &format!("authorization: Bearer {KEY}"),
        ])
        .args(extra)
        .args(["--data-binary", &body.to_string(), url])
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, code) = text.rsplit_once('\n').expect("curl printed the status");
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (
        code.trim().parse().unwrap(),
        head.to_ascii_lowercase(),
        body.to_string(),
    )
}

#[tokio::test]
async fn any_openai_client_gets_the_cascade_its_route_and_an_honest_unresolved() {
    let mut h = Harness::new(Opts {
        models: Some(models()),
        api_extra: "anonymous = true\n".into(),
        extra: format!(
            "[rag]\nmin_similarity = 0.0\nmin_relevance = 0.0\n[rag.zero_score]\nthreshold = 2.0\n{TRUSTED}\
             [[api.keys]]\ntenant = \"default\"\nkey_sha256 = \"{}\"\n",
            sha256_hex(KEY)
        ),
        ..Opts::default()
    })
    .await;
    let _orch = h.orchestrator().await;
    let api = h.api().to_string();
    let limited = h
        .orchestrator_with(&[
            ("UPSHIFT_LIMITS__SUBMIT_PER_SEC", "1"),
            ("UPSHIFT_LIMITS__SUBMIT_BURST", "1"),
            ("UPSHIFT_API__CHAT_WAIT_SECS", "1"),
        ])
        .await;
    h.api = Some(api.clone());
    h.workers();
    ingest(&h, "widgets", widgets()).await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/chat_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args([&api, KEY, &limited.api])
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the SDK client failed (scripts/deps.sh --test installs openai): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the client prints JSON");
    std::fs::write(h.dir.join("chat-client.json"), &out.stdout).unwrap();

    // The models: the cascade and one per collection.
    assert_eq!(
        seen["models"],
        serde_json::json!(["upshift", "upshift-rag/widgets"]),
        "{seen:#}"
    );

    // A defended answer: the model that gave it, the route, usage over both attempts.
    let c = &seen["complete"];
    assert_eq!(c["status"], 200, "{c:#}");
    let body = &c["body"];
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "fx-medium", "{c:#}");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("#### 30")
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["upshift"]["defended"], true);
    assert_eq!(body["upshift"]["status"], "succeeded");
    assert_eq!(body["upshift"]["tier"], "medium");
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_i64().unwrap() > 0 && usage["completion_tokens"].as_i64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_i64(),
        Some(usage["prompt_tokens"].as_i64().unwrap() + usage["completion_tokens"].as_i64().unwrap())
    );
    let hd = &c["headers"];
    assert_eq!(hd["x-upshift-status"], "succeeded");
    assert_eq!(hd["x-upshift-tier"], "medium");
    assert_eq!(hd["x-upshift-model"], "fx-medium");
    assert_eq!(hd["x-upshift-route"], "small:arithmetic_mismatch>medium:accept");
    let cost: f64 = hd["x-upshift-cost-usd"].as_str().unwrap().parse().unwrap();
    let strong: f64 = hd["x-upshift-always-strong-usd"].as_str().unwrap().parse().unwrap();
    assert!(cost > 0.0 && strong > cost, "{hd}");
    let job = hd["x-upshift-job-id"].as_str().unwrap();
    assert_eq!(body["upshift"]["job_id"], job);
    // The chat is a job like any other, with the caller's user kept on it.
    let (_, v) = h.get(&format!("/v1/jobs/{job}"), Some(KEY)).await;
    assert_eq!(v["status"], "succeeded");
    let user: String = sqlx::query_scalar("SELECT input->'metadata'->'openai'->>'user' FROM jobs WHERE id = $1::uuid")
        .bind(job)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(user, "u-42");
    // A conversation is one input: a transcript, system text first.
    assert_eq!(seen["system"]["status"], 200, "{:#}", seen["system"]);
    assert_eq!(seen["system"]["headers"]["x-upshift-route"], "small:accept");

    // Streaming: the verified answer as content, the final chunk, usage.
    let s = &seen["stream"];
    assert!(s["content"].as_str().unwrap().contains("#### 30"), "{s:#}");
    assert_eq!(s["finish_reasons"], serde_json::json!(["stop"]));
    assert_eq!(s["models"], serde_json::json!(["fx-medium"]));
    assert!(s["usage"]["total_tokens"].as_i64().unwrap() > 0, "{s:#}");
    assert_eq!(s["last_upshift"]["defended"], true);

    // Unresolved: 422, OpenAI-shaped, the best answer in `upshift`.
    let u = &seen["unresolved"];
    assert_eq!(u["raised"], "UnprocessableEntityError", "{u:#}");
    assert_eq!(u["status"], 422);
    assert_eq!(u["body"]["error"]["type"], "unresolved");
    assert_eq!(u["body"]["error"]["code"], "unresolved");
    assert!(u["body"]["error"]["param"].is_null());
    assert_eq!(u["body"]["upshift"]["defended"], false);
    assert_eq!(
        u["body"]["upshift"]["best_answer"], "There is no such colour, sadly",
        "{u:#}"
    );
    assert!(
        !u["body"]["upshift"]["findings"].as_array().unwrap().is_empty(),
        "{u:#}"
    );
    assert_eq!(u["headers"]["x-upshift-status"], "unresolved");
    assert!(
        u["headers"]["x-upshift-route"]
            .as_str()
            .unwrap()
            .ends_with("strong:unresolved"),
        "{u:#}"
    );
    // ... or a 200 marked undefended when asked for.
    let a = &seen["unresolved_answer"];
    assert_eq!(a["status"], 200, "{a:#}");
    assert_eq!(a["headers"]["x-upshift-status"], "unresolved");
    assert_eq!(a["body"]["upshift"]["defended"], false);
    assert_eq!(
        a["body"]["choices"][0]["message"]["content"],
        "There is no such colour, sadly"
    );
    // `stop` and `max_tokens` reach the models: every tier's answer is cut
    // before its final-answer marker.
    let l = &seen["limits"];
    assert_eq!(l["status"], 200, "{l:#}");
    let content = l["body"]["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!content.is_empty() && !content.contains("####"), "{l:#}");
    // Streamed, it ends with the error: no undefended text as content.
    let us = &seen["unresolved_stream"];
    assert_eq!(us["raised"], "APIError", "{us:#}");
    assert_eq!(us["body"]["code"], "unresolved");
    // A budget that stops the cascade has its own code.
    let b = &seen["budget"];
    assert_eq!(b["status"], 422, "{b:#}");
    assert_eq!(b["body"]["error"]["code"], "budget_exhausted", "{b:#}");

    // A JSON schema becomes the step's output schema, checked by its verifier.
    let j = &seen["schema"];
    assert_eq!(j["status"], 200, "{j:#}");
    let answer: Value = serde_json::from_str(j["body"]["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(answer, serde_json::json!({"city": "Paris", "year": 1889}));
    assert!(
        j["headers"]["x-upshift-route"]
            .as_str()
            .unwrap()
            .starts_with("small:schema"),
        "{j:#}"
    );

    // A collection's rag model answers with citations.
    let r = &seen["rag"];
    assert_eq!(r["status"], 200, "{r:#}");
    assert!(
        r["body"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("max_widgets"),
        "{r:#}"
    );
    assert!(
        !r["body"]["upshift"]["citations"].as_array().unwrap().is_empty(),
        "{r:#}"
    );
    // Composed from the span a model chose: that model is the one named.
    assert_eq!(r["headers"]["x-upshift-model"], "fx-small", "{r:#}");
    assert_eq!(r["headers"]["x-upshift-tier"], "small", "{r:#}");
    assert!(
        r["headers"]["x-upshift-route"]
            .as_str()
            .unwrap()
            .contains(";extract=zero:low_confidence>small:accept;"),
        "{r:#}"
    );

    // OpenAI-shaped errors with the usual statuses.
    let m = &seen["no_model"];
    assert_eq!(
        (m["status"].as_u64(), m["body"]["error"]["code"].as_str()),
        (Some(404), Some("model_not_found")),
        "{m:#}"
    );
    assert_eq!(m["body"]["error"]["param"], "model");
    let m = &seen["no_collection"];
    assert_eq!(
        (m["status"].as_u64(), m["body"]["error"]["code"].as_str()),
        (Some(404), Some("model_not_found")),
        "{m:#}"
    );
    assert_eq!(m["body"]["error"]["param"], "model");
    let p = &seen["bad_param"];
    assert_eq!(p["status"], 400, "{p:#}");
    assert_eq!(p["body"]["error"]["param"], "temperature");
    assert_eq!(p["body"]["error"]["type"], "invalid_request_error");
    let k = &seen["bad_key"];
    assert_eq!(k["raised"], "AuthenticationError", "{k:#}");
    assert_eq!(k["body"]["error"]["type"], "authentication_error");
    let limited_hits: Vec<&Value> = seen["rate_limit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == 429)
        .collect();
    assert!(!limited_hits.is_empty(), "{:#}", seen["rate_limit"]);
    for t in limited_hits {
        assert_eq!(t["raised"], "RateLimitError");
        assert_eq!(t["body"]["error"]["type"], "rate_limit_error");
        assert!(t["headers"]["retry-after"].is_string(), "{t:#}");
    }

    // curl: the headers on the wire, the route as SSE comments, [DONE].
    let url = format!("{api}/v1/chat/completions");
    let bob = serde_json::json!({"model": "upshift", "messages": [{"role": "user",
        "content": "Bob packs 5 boxes with 6 pens each. How many pens does he pack?"}]});
    let (code, head, _) = curl(&url, &bob, &[]).await;
    assert_eq!(code, 200);
    assert!(
        head.contains("x-upshift-route: small:arithmetic_mismatch>medium:accept"),
        "{head}"
    );
    let mut streamed = bob.clone();
    streamed["stream"] = true.into();
    let (code, head, sse) = curl(&url, &streamed, &[]).await;
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: text/event-stream") && head.contains("x-upshift-job-id: "),
        "{head}"
    );
    assert!(
        sse.contains(": upshift: {") && sse.contains("\"event\":\"escalate\""),
        "{sse}"
    );
    let comment = sse.find(": upshift: ").unwrap();
    let content = sse.find("\"content\":\"").unwrap();
    assert!(comment < content, "the route comes before any content: {sse}");
    assert!(sse.trim_end().ends_with("data: [DONE]"), "{sse}");

    // A wait that runs out: 504 with the job id; the job keeps running.
    let train = serde_json::json!({"model": "upshift", "messages": [{"role": "user", "content": TRAIN}]});
    // (That orchestrator admits one job a second: wait out the burst above.)
    let limited_url = format!("{}/v1/chat/completions", limited.api);
    let (mut code, mut head, mut body) = curl(&limited_url, &train, &[]).await;
    for _ in 0..10 {
        if code != 429 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        (code, head, body) = curl(&limited_url, &train, &[]).await;
    }
    assert_eq!(code, 504, "{head}{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["type"], "timeout");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-upshift-job-id: "))
        .expect("the job id header")
        .trim()
        .to_string();
    eventually(Duration::from_secs(60), || async {
        let (_, v) = h.get(&format!("/v1/jobs/{id}"), Some(KEY)).await;
        (v["status"] == "succeeded").then_some(())
    })
    .await;
    h.finish().await;
}
