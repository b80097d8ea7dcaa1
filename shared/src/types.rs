//! The small closed vocabularies of the system: tiers, task types, blast radius.
//! All are stored as lower-case text in Postgres and on the wire.

/// Declares a closed, text-backed enum with `as_str`, `Display`, `FromStr` and
/// an `ALL` list, so the database, the wire and the CLI share one spelling.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The text form used in storage and on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, Self::Error> { s.parse() }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{other}` (expected one of: {})",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}
pub(crate) use text_enum;

text_enum! {
    /// A model tier. Ordered cheapest first; escalation moves one tier up.
    Tier {
        /// The cheapest tier.
        Small => "small",
        /// The middle tier.
        Medium => "medium",
        /// The most capable, most expensive tier.
        Strong => "strong",
    }
}

impl Tier {
    /// The next tier up, or `None` at the top.
    pub fn next(self) -> Option<Tier> {
        match self {
            Tier::Small => Some(Tier::Medium),
            Tier::Medium => Some(Tier::Strong),
            Tier::Strong => None,
        }
    }
}

text_enum! {
    /// Kinds of job (stored in `jobs.kind`).
    JobKind {
        /// An explicit list of steps.
        Steps => "steps",
        /// Retrieval-augmented answer with citations, from a collection.
        Rag => "rag",
    }
}

impl JobKind {
    /// Whether the router reads the job's stored request when it decides
    /// (a rag job's question and collection); other kinds' requests stay
    /// in Postgres, unread by the decisions.
    pub fn reads_stored_request(self) -> bool {
        self == JobKind::Rag
    }
}

text_enum! {
    /// How much damage a wrong answer does, given by the caller per job.
    BlastRadius {
        /// A wrong answer is cheap to notice and undo.
        Low => "low",
        /// A wrong answer costs real effort.
        Medium => "medium",
        /// A wrong answer is costly or public.
        High => "high",
    }
}

text_enum! {
    /// What a step asks the model to do.
    TaskType {
        /// Pick a label from a closed set.
        Classify => "classify",
        /// Pull structured fields out of text (JSON output).
        Extract => "extract",
        /// Turn a query into search terms.
        RetrievePlan => "retrieve_plan",
        /// Shorten text.
        Summarise => "summarise",
        /// Restate text in another form.
        Rewrite => "rewrite",
        /// Write an answer from gathered evidence.
        Synthesise => "synthesise",
        /// Judge another step's output.
        Critique => "critique",
        /// Answer a question, e.g. a math word problem.
        Answer => "answer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_unknown_is_named() {
        for t in TaskType::ALL {
            assert_eq!(t.as_str().parse::<TaskType>().unwrap(), *t);
        }
        let err = "poem".parse::<TaskType>().unwrap_err();
        assert!(err.contains("poem") && err.contains("classify"), "{err}");
    }

    #[test]
    fn tiers_climb_and_stop() {
        assert_eq!(Tier::Small.next(), Some(Tier::Medium));
        assert_eq!(Tier::Strong.next(), None);
        assert!(Tier::Small < Tier::Strong);
    }
}
