//! The worker's small HTTP side: Prometheus `/metrics`, `/healthz`, and
//! `/readyz` (503 while NATS is disconnected).
//!
//! Worker metrics: `upshift_worker_calls_total{tier, model, outcome}`,
//! `upshift_worker_model_call_seconds{tier, model}` (histogram) and
//! `upshift_worker_in_flight{tier}` (gauge).

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

/// Serves until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: PrometheusHandle, nats: async_nats::Client) {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if nats.connection_state() == async_nats::connection::State::Connected {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "nats disconnected")
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "worker http server stopped");
    }
}
