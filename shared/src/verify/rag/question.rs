//! What a question asks for: a setting, a command, a function, a program,
//! a file, a data type, a default value, a number, or something free-form.
//!
//! The type decides which spans of the retrieved passages can answer it
//! (the extractive candidates) and what the answer-type verifier demands:
//! a "which setting" question needs an answer that names a setting, and
//! that name must appear in a passage the answer cites.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// The kind of answer a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionType {
    /// "Which setting / parameter …": a configuration parameter's name.
    Setting,
    /// "Which command / statement …": an SQL command (`VACUUM`, `ALTER SYSTEM`).
    Command,
    /// "Which clause / keyword …": an SQL keyword or clause (`CONCURRENTLY`).
    Clause,
    /// "Which function …": a function name.
    Function,
    /// "Which program / utility / tool …": a program's name.
    Program,
    /// "Which (configuration) file …": a file name.
    File,
    /// "Which data type …": a type name.
    DataType,
    /// "What is the default …", "… by default": a value.
    Default,
    /// "How many / how much / which port / what is the maximum …": a number.
    Number,
    /// Anything else: answered by a sentence of the passages.
    Free,
}

impl QuestionType {
    /// The text form, as shown in findings and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            QuestionType::Setting => "setting",
            QuestionType::Command => "command",
            QuestionType::Clause => "clause",
            QuestionType::Function => "function",
            QuestionType::Program => "program",
            QuestionType::File => "file",
            QuestionType::DataType => "data type",
            QuestionType::Default => "default value",
            QuestionType::Number => "number",
            QuestionType::Free => "free-form answer",
        }
    }

    /// Whether an answer of this type is a short span (else a sentence).
    pub fn wants_span(self) -> bool {
        self != QuestionType::Free
    }

    /// Whether the answer is a name (a setting, function, program,
    /// command, data type or file): where a near miss is another real name
    /// whose definition reads almost like the question.
    pub fn wants_name(self) -> bool {
        matches!(
            self,
            QuestionType::Setting
                | QuestionType::Function
                | QuestionType::Program
                | QuestionType::Command
                | QuestionType::DataType
                | QuestionType::File
        )
    }
}

/// Rules in order; the first that matches decides. A question that asks
/// "how many" about a default is a number question, so numbers come before
/// defaults, and the named things before both.
static RULES: LazyLock<Vec<(QuestionType, Regex)>> = LazyLock::new(|| {
    let which =
        r"\b(?:which|what)\s+(?:(?:sql|configuration|server|runtime|postgresql|built-in|command-line|system|data)\s+)*";
    let rule = |t: QuestionType, re: String| (t, Regex::new(&format!("(?i){re}")).expect("valid regex"));
    vec![
        rule(QuestionType::Setting, format!(r"{which}(?:setting|parameter|option|variable|guc)s?\b")),
        rule(QuestionType::Function, format!(r"{which}functions?\b")),
        rule(QuestionType::Command, format!(r"{which}(?:command|statement)s?\b")),
        rule(QuestionType::Clause, format!(r"{which}(?:clause|keyword)s?\b")),
        rule(
            QuestionType::Program,
            format!(r"{which}(?:program|utility|utilities|tool|application|client|binary|executable)s?\b"),
        ),
        rule(QuestionType::File, format!(r"{which}files?\b")),
        rule(QuestionType::DataType, format!(r"{which}types?\b")),
        rule(
            QuestionType::Number,
            r"\bhow\s+(?:many|much|long|large|big|often)\b|\b(?:what|which)\s+(?:tcp\s+)?(?:port|number)\b|\bon\s+which\s+(?:tcp\s+)?port\b|\b(?:maximum|minimum|largest|smallest|highest|lowest)\b".into(),
        ),
        rule(QuestionType::Default, r"\bdefaults?\b".into()),
    ]
});

/// The type of answer `question` asks for.
pub fn classify(question: &str) -> QuestionType {
    RULES
        .iter()
        .find(|(_, re)| re.is_match(question))
        .map_or(QuestionType::Free, |(t, _)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_typed_by_what_they_ask_for() {
        let cases = [
            (
                "Which setting controls how much information is written to the WAL?",
                QuestionType::Setting,
            ),
            (
                "Which parameter limits the number of concurrent connections?",
                QuestionType::Setting,
            ),
            (
                "Which function returns the current WAL write location?",
                QuestionType::Function,
            ),
            (
                "Which SQL command changes a server configuration parameter?",
                QuestionType::Command,
            ),
            ("Which program takes a base backup?", QuestionType::Program),
            (
                "Which clause of CREATE INDEX avoids locking out writes?",
                QuestionType::Clause,
            ),
            (
                "Which configuration file controls client authentication?",
                QuestionType::File,
            ),
            ("Which data type holds an IPv4 address?", QuestionType::DataType),
            ("What is the default value of shared_buffers?", QuestionType::Default),
            ("How many autovacuum workers may run by default?", QuestionType::Number),
            (
                "On which TCP port does the server listen by default?",
                QuestionType::Number,
            ),
            (
                "What does a plain VACUUM do with the space it reclaims?",
                QuestionType::Free,
            ),
        ];
        for (q, t) in cases {
            assert_eq!(classify(q), t, "{q}");
        }
        assert!(QuestionType::Setting.wants_span() && !QuestionType::Free.wants_span());
    }
}
