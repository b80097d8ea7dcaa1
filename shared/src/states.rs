//! Lifecycle states of jobs, steps and attempts, and the classes of a
//! failed model call: one spelling each, shared by the wire, the store and
//! the API (stored as the lower-case text shown here).

use crate::types::text_enum;

text_enum! {
    /// Where a job stands.
    JobStatus {
        /// Steps are still running.
        Running => "running",
        /// Every step's answer was defended.
        Succeeded => "succeeded",
        /// Done, but a step's answer could not be defended: the best answer
        /// is kept, marked undefended, with the findings.
        Unresolved => "unresolved",
        /// A step failed on every tier it could try.
        Failed => "failed",
    }
}

impl JobStatus {
    /// Whether the job is over.
    pub fn is_finished(self) -> bool {
        self != JobStatus::Running
    }
}

text_enum! {
    /// Where a step stands.
    StepState {
        /// Waiting for the steps it depends on.
        Pending => "pending",
        /// An attempt is out.
        Running => "running",
        /// Its answer was defended.
        Accepted => "accepted",
        /// Its best answer is kept undefended, with open findings.
        Unresolved => "unresolved",
        /// No tier could answer it.
        Failed => "failed",
        /// Its job ended before it ran.
        Cancelled => "cancelled",
    }
}

impl StepState {
    /// Whether the steps that depend on it may start (it has an answer,
    /// defended or not).
    pub fn is_done(self) -> bool {
        matches!(self, StepState::Accepted | StepState::Unresolved)
    }
}

text_enum! {
    /// Where an attempt (one model call) stands.
    AttemptStatus {
        /// Its task message is out; no result yet.
        Dispatched => "dispatched",
        /// The worker answered.
        Answered => "answered",
        /// The call failed (or its task was dead-lettered).
        Failed => "failed",
        /// Its deadline passed first (a late answer keeps this status).
        TimedOut => "timed_out",
    }
}

text_enum! {
    /// What the router decided about an attempt.
    AttemptVerdict {
        /// Its answer was defended.
        Accepted => "accepted",
        /// Its step went one tier up.
        Escalated => "escalated",
        /// Its job failed.
        Rejected => "rejected",
        /// Its answer is kept undefended.
        Unresolved => "unresolved",
    }
}

text_enum! {
    /// What a route event records (`route_events.event`): a step's start,
    /// an attempt's dispatch, the decisions, a result after its attempt was
    /// decided, a step cancelled.
    RouteEventKind {
        /// A step started on a tier (or without a model).
        Start => "start",
        /// An attempt's task was published.
        Dispatch => "dispatch",
        /// An answer was defended.
        Accept => "accept",
        /// The best answer is kept undefended.
        Unresolved => "unresolved",
        /// The step went a tier up.
        Escalate => "escalate",
        /// The step failed.
        Fail => "fail",
        /// A result arrived for an attempt already decided.
        LateResult => "late_result",
        /// The step was cancelled (its job ended first).
        Cancel => "cancel",
    }
}

impl RouteEventKind {
    /// Whether it is a decision about an attempt or a step.
    pub fn is_decision(self) -> bool {
        matches!(
            self,
            RouteEventKind::Accept | RouteEventKind::Unresolved | RouteEventKind::Escalate | RouteEventKind::Fail
        )
    }
}

text_enum! {
    /// Why a model call failed, as a worker reports it.
    ErrorClass {
        /// The provider kept saying 429 past the retry budget.
        RateLimited => "rate_limited",
        /// A network or 5xx error that outlived the retries.
        Transient => "transient",
        /// The call ran past its deadline.
        Timeout => "timeout",
        /// The provider's response was larger than `max_response_bytes`.
        TooLarge => "too_large",
        /// Anything retrying cannot fix (a bad request, an unstorable answer).
        Fatal => "fatal",
    }
}
