//! Prompts: how a task message is put to a model. One place, so the
//! OpenAI-compatible and the local provider ask the same question.

mod rag;

pub use rag::citation_grammar;

use upshift_shared::TaskType;
use upshift_shared::messages::TaskMessage;

/// A prompt as chat messages; completion-style models get [`Prompt::as_completion`].
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// What the task type asks for, and the output format.
    pub instruction: String,
    /// The step's input plus the outputs of the steps it depends on.
    pub content: String,
    /// Put the instruction after the content. Label-scored rag prompts do:
    /// their evidence then comes first, so the content-free prompt and the
    /// other phrasings share it and the model reads it once.
    pub instruction_last: bool,
}

impl Prompt {
    /// The user message of a chat: instruction and content, in order.
    pub fn user_message(&self) -> String {
        if self.instruction_last {
            format!("{}\n\n{}", self.content, self.instruction)
        } else {
            format!("{}\n\n{}", self.instruction, self.content)
        }
    }

    /// Plain-text layout for base (not instruction-tuned) models: the model
    /// continues after `Answer:`.
    pub fn as_completion(&self) -> String {
        format!("{}\nAnswer:", self.user_message())
    }
}

/// Ways of phrasing a classification, for prompt ensembles (variant 0 is the
/// plain one). More variants than this cycle.
pub const CLASSIFY_VARIANTS: u32 = 3;

/// The content-free twin of a label task's prompt (variant `variant`): the
/// same frame with nothing to judge ("N/A"), whose label probabilities are
/// the model's prior over the labels (contextual calibration). A rag
/// step keeps its evidence and loses only the question (and answer).
pub fn content_free(task: &TaskMessage, variant: u32) -> Prompt {
    if let Some(p) = rag::build_labels(task, variant, true) {
        return p;
    }
    let mut null_task = task.clone();
    null_task.input = "N/A".into();
    null_task.context.clear();
    build(&null_task, variant)
}

/// Builds the prompt of `task`. `variant` picks a phrasing for label tasks.
pub fn build(task: &TaskMessage, variant: u32) -> Prompt {
    if let Some(p) = rag::build_labels(task, variant, false) {
        return p;
    }
    if let Some(p) = rag::build(task) {
        return p;
    }
    let labels = task.labels.join(", ");
    let instruction = match task.task {
        TaskType::Classify if !task.labels.is_empty() => match variant % CLASSIFY_VARIANTS {
            0 => format!("Classify the text. Reply with exactly one of these labels: {labels}."),
            1 => format!(
                "Read the text and decide which label fits it best. Labels: {labels}. Reply with the label only."
            ),
            _ => format!("Which one of these describes the text: {labels}? Reply with one word from the list."),
        },
        TaskType::Classify => "Classify the text. Reply with the label only.".to_string(),
        TaskType::Extract => match &task.output_schema {
            Some(s) => {
                format!("Extract what is asked from the text. Reply with only JSON that matches this JSON schema: {s}")
            }
            None => "Extract what is asked from the text. Reply with only JSON.".to_string(),
        },
        TaskType::Answer => "Answer the question. Work it out briefly, then give the final answer \
                             on its own last line as `#### <answer>`."
            .to_string(),
        TaskType::Summarise => "Summarise the text in at most three sentences.".to_string(),
        TaskType::Rewrite => "Rewrite the text as asked.".to_string(),
        TaskType::RetrievePlan => "Turn the question into 3 to 8 search keywords for a full-text \
                                   search. Reply with the keywords only, separated by spaces."
            .to_string(),
        TaskType::Synthesise => "Answer the question using only the evidence given. After each \
                                 sentence, cite the passages it rests on as [passage_id]."
            .to_string(),
        TaskType::Critique => "Check whether the answer is supported by the evidence. Reply with \
                               JSON: {\"verdict\": \"accept\" or \"reject\", \"reason\": \"...\"}."
            .to_string(),
    };
    let mut content = format!("Text: {}", task.input.trim());
    for c in &task.context {
        content.push_str(&format!("\n\nOutput of step `{}`:\n{}", c.step, c.output.trim()));
    }
    if task.task == TaskType::Classify && variant % CLASSIFY_VARIANTS == 1 && !task.labels.is_empty() {
        content.push_str(&format!("\n\nLabels: {labels}"));
    }
    Prompt {
        instruction,
        content,
        instruction_last: false,
    }
}

/// The schema to constrain decoding to, when the task has one: the step's
/// output schema (for a rag extraction, with `passage_id` narrowed to the
/// retrieved passages), or a label task's label set.
pub fn decoding_schema(task: &TaskMessage) -> Option<serde_json::Value> {
    match (&task.output_schema, task.task) {
        (Some(s), TaskType::Extract) => Some(rag::narrow_ids(task, s.clone())),
        (Some(s), _) => Some(s.clone()),
        (None, TaskType::Classify) if !task.labels.is_empty() => Some(labels_schema(&task.labels)),
        _ => None,
    }
}

/// The JSON schema a label task's output is constrained to.
pub fn labels_schema(labels: &[String]) -> serde_json::Value {
    serde_json::json!({ "type": "string", "enum": labels })
}

/// A task message for prompt tests: `input`, context as (step, output)
/// pairs, and labels.
#[cfg(test)]
pub(crate) fn test_task(t: TaskType, input: &str, context: &[(&str, &str)], labels: &[&str]) -> TaskMessage {
    use upshift_shared::messages::ContextItem;
    TaskMessage {
        version: upshift_shared::messages::MESSAGE_VERSION,
        attempt_id: uuid::Uuid::nil(),
        attempt_token: uuid::Uuid::nil(),
        job_id: uuid::Uuid::nil(),
        step_id: uuid::Uuid::nil(),
        tier: upshift_shared::Tier::Small,
        task: t,
        input: input.into(),
        context: context
            .iter()
            .map(|(s, o)| ContextItem {
                step: s.to_string(),
                output: o.to_string(),
            })
            .collect(),
        output_schema: None,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        max_tokens: None,
        stop: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(t: TaskType, labels: &[&str]) -> TaskMessage {
        test_task(t, " The food was cold. ", &[("a", "x")], labels)
    }
    #[test]
    fn prompts_name_the_labels_and_carry_context() {
        let p = build(&task(TaskType::Classify, &["positive", "negative"]), 0);
        assert!(p.instruction.contains("positive, negative"));
        assert!(p.content.starts_with("Text: The food was cold."));
        assert!(p.content.contains("Output of step `a`:\nx"));
        assert!(p.as_completion().ends_with("Answer:"));
        assert_ne!(build(&task(TaskType::Classify, &["a", "b"]), 1), p);
        assert!(build(&task(TaskType::Answer, &[]), 0).instruction.contains("####"));
    }
}
