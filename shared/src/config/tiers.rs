//! A tier's model: one catalog name, or candidates of which the first
//! available one serves.

use serde::{Deserialize, Serialize};

/// One catalog name, or candidates in order of preference.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TierChoice {
    /// Exactly this model.
    One(String),
    /// The first available of these.
    FirstOf(Vec<String>),
}

impl From<&str> for TierChoice {
    fn from(name: &str) -> Self {
        TierChoice::One(name.to_string())
    }
}

impl TierChoice {
    /// The candidate names, in order of preference.
    pub fn names(&self) -> &[String] {
        match self {
            TierChoice::One(n) => std::slice::from_ref(n),
            TierChoice::FirstOf(v) => v,
        }
    }
}
