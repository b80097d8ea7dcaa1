//! A rag job whose retrieval misses its floor: unresolved at once on the
//! embedded defaults (no local model is trusted to rewrite the question),
//! or escalated to a rewrite where one is trusted.

use crate::rag::{LIMIT_Q, asked, ev, events_of, step_route, widgets_stack};

#[tokio::test]
async fn a_retrieval_under_its_floor_ends_unresolved_at_once_when_no_rewrite_is_trusted() {
    // The embedded defaults trust no local model to rewrite (rescued 0 of
    // 52 misses): a miss costs nothing and says why.
    let (h, _orch) = widgets_stack("[rag]\nmin_similarity = 0.99\n").await;
    let (job, v) = asked(&h, LIMIT_Q).await;
    assert_eq!(v["status"], "unresolved", "{v:#}");
    let route = step_route(&h, job).await;
    assert_eq!(
        events_of(&route, "retrieve"),
        [
            ev("start", "-", "-", "risk_rule"),
            ev("unresolved", "-", "-", "retrieval_empty"),
        ]
    );
    assert_eq!(v["cost_usd"].as_f64(), Some(0.0), "{v:#}");
    assert_eq!(v["result"]["search_terms"], LIMIT_Q, "{v:#}");
    h.finish().await;
}

#[tokio::test]
async fn a_retrieval_under_its_floor_escalates_to_a_trusted_rewrite_and_ends_unresolved() {
    // No sentence can be this similar to the question: every search misses.
    let (h, _orch) = widgets_stack(
        "[rag]\nmin_similarity = 0.99\n[routing.accept.small.by_class]\nrag_retrieve = 0.0\n\
         [routing.accept.medium.by_class]\nrag_retrieve = 0.0\n[routing.accept.strong.by_class]\nrag_retrieve = 0.0\n",
    )
    .await;
    let q = LIMIT_Q;
    let (job, v) = asked(&h, q).await;
    assert_eq!(v["status"], "unresolved", "{v:#}");
    let route = step_route(&h, job).await;
    assert_eq!(
        events_of(&route, "retrieve"),
        [
            ev("start", "-", "-", "risk_rule"),
            ev("escalate", "-", "small", "retrieval_empty"),
            ev("escalate", "small", "medium", "retrieval_empty"),
            ev("escalate", "medium", "strong", "retrieval_empty"),
            ev("unresolved", "strong", "-", "retrieval_empty"),
        ]
    );
    // The rewrite was searched with the question.
    assert_eq!(
        v["result"]["search_terms"],
        format!("{q} | max_widgets session limit"),
        "{v:#}"
    );
    for step in ["extract", "synthesise", "critique"] {
        assert_eq!(
            events_of(&route, step),
            [ev("cancel", "-", "-", "dependency_unresolved")]
        );
    }
    h.finish().await;
}
