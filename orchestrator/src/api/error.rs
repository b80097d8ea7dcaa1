//! The one place errors become HTTP responses:
//! `{ "error": { "code", "message", "field"? } }`. SQL text never leaves here.

use crate::error::Error;
use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error: `{ "error": { "code", "message", "field"? } }`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `invalid_field`.
    pub code: String,
    /// What is wrong, for people.
    pub message: String,
    /// The offending field's path, when there is one.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    /// Seconds for a Retry-After header (429, 503).
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with its status, code and message.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// The same error, telling the client to retry after `secs` seconds.
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// Its message.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The offending field, if any.
    pub(crate) fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Its Retry-After seconds, if any.
    pub(crate) fn retry_secs(&self) -> Option<u64> {
        self.retry_after
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { field, message } => ApiError {
                field: Some(field.clone()),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    format!("{field}: {message}"),
                )
            },
            Error::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found")),
            Error::Unauthorized => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a backing service is unavailable; retry",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let text = r.body_text();
        let (code, field) = match &r {
            JsonRejection::JsonDataError(_) => ("invalid_field", field_of(&text)),
            JsonRejection::JsonSyntaxError(_) => ("malformed_json", None),
            JsonRejection::MissingJsonContentType(_) => ("unsupported_media_type", None),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", None),
            _ => ("bad_request", None),
        };
        let status = if code == "invalid_field" {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            r.status()
        };
        ApiError {
            field,
            ..ApiError::new(status, code, text)
        }
    }
}

impl ApiError {
    /// 415 for a body that is neither JSON nor JSON Lines.
    pub fn unsupported_media() -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or application/x-ndjson",
        )
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(r.status(), code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", format!("id: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

/// The serde path in axum's message: `…target type: steps[0].task: unknown…`.
fn field_of(text: &str) -> Option<String> {
    let rest = text.split_once("target type: ")?.1;
    let (field, _) = rest.split_once(": ")?;
    (!field.contains(' ')).then(|| field.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_field_in_serde_messages() {
        let t = "Failed to deserialize the JSON body into the target type: steps[0].task: unknown variant `poem`";
        assert_eq!(field_of(t).as_deref(), Some("steps[0].task"));
        assert_eq!(
            field_of("Failed to deserialize the JSON body into the target type: missing field `kind` at line 1"),
            None
        );
    }
}
