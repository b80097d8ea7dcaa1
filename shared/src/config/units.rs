//! Durations in the configuration: written as whole seconds (`*_secs`) or
//! milliseconds (`*_ms`) in TOML and environment variables, held as
//! [`Duration`] once loaded, so no module converts units itself.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// `#[serde(with = "secs")]`: a [`Duration`] written as whole seconds.
pub mod secs {
    use super::*;

    /// Writes whole seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    /// Reads whole seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// `#[serde(with = "millis")]`: a [`Duration`] written as milliseconds.
pub mod millis {
    use super::*;

    /// Writes whole milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    /// Reads whole milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
