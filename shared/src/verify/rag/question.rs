//! What a question asks for: a setting, a command, a function, a program,
//! a file, a data type, another kind of name (an option, a variable, a
//! module, a directive …), a default value, another value, a number, or
//! something free-form.
//!
//! Users write context first and ask last ("Our nightly export keeps timing
//! out. Which setting …?"): the sentence that asks ([`asking_sentence`]) is
//! the question, the rest is context. The type and the entities an answer
//! must account for come from the asking sentence alone; retrieval still
//! searches with the whole text.
//!
//! The type decides which spans of the retrieved passages can answer it
//! (the extractive candidates) and what the answer-type verifier demands:
//! a "which setting" question needs an answer that names a setting, and
//! that name must appear in a passage the answer cites.

use regex::Regex;
use std::sync::LazyLock;

crate::types::text_enum! {
    /// The kind of answer a question asks for.
    QuestionType {
        /// "Which setting / parameter …": a configuration parameter's name.
        Setting => "setting",
        /// "Which command / statement …": a command (`VACUUM`, `ALTER SYSTEM`).
        Command => "command",
        /// "Which clause / keyword …": a keyword or clause (`CONCURRENTLY`).
        Clause => "clause",
        /// "Which function …": a function name.
        Function => "function",
        /// "Which program / utility / tool …": a program's name.
        Program => "program",
        /// "Which (configuration) file …": a file name.
        File => "file",
        /// "Which data type …": a type name.
        DataType => "data_type",
        /// Any other name: "which option / flag / environment variable /
        /// module / class / exception / method / directive / extension /
        /// keyword / level …", "what is X called".
        Name => "name",
        /// "What is the default …", "… by default": a value.
        Default => "default",
        /// "What value of X …", "what do I set X to?", "what do I pass
        /// for X?": a value, not asked as a default.
        Value => "value",
        /// "How many / how much / which port / what is the maximum …": a number.
        Number => "number",
        /// Anything else: answered by a sentence of the passages.
        Free => "free",
    }
}

impl QuestionType {
    /// The type in words, as findings say it ("the question asks for a …").
    pub fn describe(self) -> &'static str {
        match self {
            QuestionType::DataType => "data type",
            QuestionType::Default => "default value",
            QuestionType::Free => "free-form answer",
            t => t.as_str(),
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
                | QuestionType::Name
        )
    }
}

/// Rules in order; the first that matches decides. A question that asks
/// "how many" about a default is a number question, so numbers come before
/// defaults, and the named things before both.
static RULES: LazyLock<Vec<(QuestionType, Regex)>> = LazyLock::new(|| {
    // "which", "what", "what's the", "which … do i use", "the name of the".
    // "which", "what's the", "is there a", "i need a", then up to two words
    // ("which server setting", "what log level"); a match holding
    // "default" is a default's value, not a name ([`classify`]).
    let which = r"\b(?:which|what(?:'s|\s+is|\s+are)?(?:\s+the)?(?:\s+name\s+of\s+the)?|is\s+there\s+(?:an?|any|some)|are\s+there\s+(?:any\s+)?|(?:i|we)\s+(?:need|want)\s+(?:an?|the|some))\s+(?:[\w.-]+\s+){0,2}?";
    let rule = |t: QuestionType, re: String| (t, Regex::new(&format!("(?i){re}")).expect("valid regex"));
    vec![
        rule(QuestionType::Setting, format!(r"{which}(?:setting|parameter|config(?:uration)?\s+(?:option|key|value))s?\b")),
        rule(QuestionType::Function, format!(r"{which}(?:functions?|built-?ins?|callables?|aggregates?)\b")),
        rule(QuestionType::Command, format!(r"{which}(?:commands?|statements?|meta-?commands?)\b")),
        rule(QuestionType::Clause, format!(r"{which}(?:clause|keyword)s?\b")),
        rule(
            QuestionType::Program,
            format!(r"{which}(?:program|utility|utilities|tool|application|client|binary|executable|script)s?\b"),
        ),
        rule(QuestionType::File, format!(r"{which}(?:(?:config(?:uration)?\s+)?files?|file\s*names?)\b")),
        rule(QuestionType::DataType, format!(r"{which}(?:data\s*)?types?\b")),
        rule(
            QuestionType::Name,
            format!(
                r"{which}(?:(?:command[- ]line\s+)?(?:option|flag|switch|argument)s?|(?:environment|env|shell|server)\s+var(?:iable)?s?|var(?:iable)?s?|modules?|packages?|class(?:es)?|exceptions?|errors?|methods?|attributes?|properties|property|constants?|decorators?|directives?|extensions?|levels?|modes?|keys?|fields?|headers?|hooks?|macros?|codes?|format\s+codes?|specifiers?|operators?|flags?|names?|contexts?)\b|\bwhat\s+(?:is|are)\s+(?:it|they|this|that|these|those|the)(?:\s+\w+)?\s+called\b|\bwhat\s+do\s+(?:i|you|we)\s+call\b|\bwhat(?:'s|\s+is)\s+the\s+name\b|\bwhich\s+one\b"
            ),
        ),
        rule(
            QuestionType::Number,
            r"\bhow\s+(?:many|much|long|large|big|often)\b|\b(?:what|which)\s+(?:tcp\s+)?(?:port|number)\b|\bon\s+which\s+(?:tcp\s+)?port\b|\b(?:maximum|minimum|largest|smallest|highest|lowest)\b".into(),
        ),
        rule(QuestionType::Default, r"\bdefaults?\b".into()),
        // After the default: "what value is the default" asks for a default.
        // "What do I set / pass / put so it …" asks for a name as often as
        // for a value: only a named slot ("set X to?", "pass for X") is one.
        rule(
            QuestionType::Value,
            r"\b(?:what|which)\s+(?:\w+\s+)?values?\b|\bset\s+[\w.$-]+\s+to\s*\?|\bwhat\s+(?:do|should|must|can)\s+(?:i|we|you)\s+pass\s+(?:for|as)\b".into(),
        ),
    ]
});

/// Words that open a sentence which asks (or requests) something.
static ASKS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:which|what|what's|how|where|when|who|why|is\s+there|are\s+there|can|could|does|do|should|is|are|i\s+(?:want|need|would\s+like)|i'd\s+like|tell|give|show|name|find)\b")
        .expect("valid regex")
});

/// The sentence of `query` that asks: the last one ending in `?` (with the
/// sentence before it when it is as short as "Which one?"), else the last
/// one opening with a question or request word, else the whole query.
pub fn asking_sentence(query: &str) -> String {
    let ss = super::text::sentences(query);
    if ss.len() <= 1 {
        return query.trim().to_string();
    }
    let at = ss
        .iter()
        .rposition(|s| s.trim_end().ends_with('?'))
        .or_else(|| ss.iter().rposition(|s| ASKS.is_match(s)));
    match at {
        Some(i) if i > 0 && ss[i].split_whitespace().count() < 4 => format!("{} {}", ss[i - 1], ss[i]),
        Some(i) => ss[i].clone(),
        None => query.trim().to_string(),
    }
}

/// The type of answer `query` asks for, read from its asking sentence.
pub fn classify(query: &str) -> QuestionType {
    let asking = asking_sentence(query);
    let value = |m: &str| {
        let m = m.to_lowercase();
        m.contains("default") || m.contains(" value")
    };
    RULES
        .iter()
        .find(|(t, re)| {
            re.find_iter(&asking).any(|m| {
                matches!(t, QuestionType::Number | QuestionType::Default | QuestionType::Value) || !value(m.as_str())
            })
        })
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

    #[test]
    fn the_sentence_that_asks_is_the_question_and_the_rest_context() {
        let q =
            "Our nightly export keeps timing out after an hour. Which setting controls how long a statement may run?";
        assert_eq!(
            asking_sentence(q),
            "Which setting controls how long a statement may run?"
        );
        assert_eq!(classify(q), QuestionType::Setting);
        let q = "I'm writing a backup script that copies a whole tree. Is there a function that copies it recursively? Which one?";
        assert_eq!(
            asking_sentence(q),
            "Is there a function that copies it recursively? Which one?"
        );
        assert_eq!(classify(q), QuestionType::Function);
        let q = "my CI logs show slow imports. i want the interpreter to print how long each import takes";
        assert_eq!(
            asking_sentence(q),
            "i want the interpreter to print how long each import takes"
        );
        // Context naming a default does not make it a default question.
        let q = "The default timeout was too short for us. What option raises it?";
        assert_eq!(classify(q), QuestionType::Name);
        for (q, t) in [
            ("which env var stops python writing .pyc files?", QuestionType::Name),
            ("What exception is raised when a key is missing?", QuestionType::Name),
            ("which directive sets the idle timeout?", QuestionType::Name),
            ("what module do I need for this?", QuestionType::Name),
            ("what is that flag called again?", QuestionType::Name),
            ("which log level shows the most detail?", QuestionType::Name),
            ("What's the default port?", QuestionType::Default),
            ("which option changes the default port?", QuestionType::Name),
            (
                "What value of synchronous_commit waits for the standby?",
                QuestionType::Value,
            ),
            ("ok. what do I set session_replication_role to?", QuestionType::Value),
            ("what do I pass for stderr so it goes to stdout?", QuestionType::Value),
            ("What value does it have by default?", QuestionType::Default),
            ("What do I set so psql stops at the first error?", QuestionType::Free),
            (
                "What do I pass to the dump program to skip ownership?",
                QuestionType::Free,
            ),
            (
                "what should I put in the config file to log slow queries?",
                QuestionType::Free,
            ),
        ] {
            assert_eq!(classify(q), t, "{q}");
        }
    }
}
