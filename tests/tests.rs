//! End-to-end tests: the real `upshift` binary against the real NATS
//! JetStream and Postgres of this machine. Each test gets its own database
//! and its own subject prefix, so tests run in parallel.

// Shared harness: services check, config, processes, HTTP, waiting.
mod util;

// The engine benchmark runs and prints its table.
mod bench;
// Routing through the tiers: accept on small, escalate with reasons, blast radius.
mod cascade;
// Bad input gets a 4xx JSON error and writes nothing; tenants are isolated.
mod api;
// Offline evaluation and policy fitting, and live routes equal to offline ones.
mod eval;
// Dead letters, unreadable messages, graceful shutdown.
mod faults;
// Hostile results (NUL, out-of-range numbers) and results that never settle.
mod poison;
// Slow clients and request floods: header and request timeouts, in-flight cap.
mod limits;
// API keys, tenants, secrets kept out of logs, budgets.
mod security;
// NATS users and permissions per role: the stack runs on them, the rest is refused.
mod nats_auth;
// Prometheus metrics of the orchestrator and the workers.
mod metrics;
// The route viewer, rendered by headless Chromium.
mod viewer;
// Crashes and redeliveries: no job lost, no decision recorded twice.
mod recovery;
// Decisions and new jobs in batches: once each, in route order.
mod batch;
// Real models: local llama.cpp, an OpenAI-compatible server, provider errors.
mod models;
// One OpenTelemetry trace per job, across the NATS hops.
mod traces;
// Document collections: ingest, search, bad input.
mod collections;
// The rag job: four routed steps, citations, escalation reasons.
mod rag;
// `upshift eval rag` over a fixture collection, through the live system.
mod rag_eval;
// A retrieval under its floor: unresolved at once, or a trusted rewrite.
mod rag_floor;
// Hybrid retrieval: dense and full-text rankings fused.
mod retrieval;
// The orchestrator's modules depend one way (no cycles); `shared` has no I/O.
mod layers;
// The OpenAI-compatible door, through the official SDK and curl.
mod chat;
