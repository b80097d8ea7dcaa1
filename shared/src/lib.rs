//! Pure logic shared by the orchestrator, the workers and the CLI.
//!
//! Nothing here does I/O: no tokio, no sockets, no SQL. The live router in the
//! orchestrator and offline tools call exactly this code, so a policy that is
//! tested here behaves the same in the distributed system.

pub mod config;
pub mod cost;
pub mod messages;
pub mod nats_auth;
pub mod policy;
pub mod reasons;
pub mod risk;
pub mod simulate;
pub mod states;
pub mod stats;
pub mod subjects;
pub mod types;
pub mod verify;

pub use reasons::ReasonCode;
pub use states::{AttemptStatus, AttemptVerdict, ErrorClass, JobStatus, RouteEventKind, StepState};
pub use types::{BlastRadius, JobKind, TaskType, Tier};
