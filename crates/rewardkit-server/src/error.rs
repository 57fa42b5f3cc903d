use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use thiserror::Error;

/// Everything a request can run into. Each variant names the field (with its index) or the limit
/// involved; [`ServerError::status`] is the one place that maps errors to HTTP status codes.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The body is not JSON at all.
    #[error("the body is not valid JSON: {message}")]
    BadJson {
        /// The JSON parser's message (line and column).
        message: String,
    },
    /// The body is JSON of the wrong shape.
    #[error("`{field}`: {message}")]
    Shape {
        /// The offending field, e.g. `samples[3].completion`.
        field: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// More samples than `max_samples_per_request`.
    #[error("`{field}`: {got} samples in one request; the limit is {max} (split the request)")]
    TooManySamples {
        /// The array holding the samples.
        field: String,
        /// How many were sent.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A completion longer than `max_completion_bytes`.
    #[error("`{field}`: the completion is {bytes} bytes; the limit is {max}")]
    CompletionTooLong {
        /// The offending field, e.g. `query[2]`.
        field: String,
        /// Its length in bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The body is larger than `max_body_bytes`.
    #[error("the body is larger than the limit of {max} bytes")]
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// The body did not arrive within `body_timeout`.
    #[error("the body did not arrive within {ms} ms")]
    BodyTimeout {
        /// The limit in milliseconds.
        ms: u128,
    },
    /// The body could not be read (the client went away, a broken chunked encoding, …).
    #[error("cannot read the body: {message}")]
    BodyRead {
        /// What went wrong.
        message: String,
    },
    /// A request header has a bad value.
    #[error("header `{header}`: {message}")]
    BadHeader {
        /// The header.
        header: &'static str,
        /// What was expected.
        message: String,
    },
    /// No or a wrong bearer token.
    #[error("missing or wrong bearer token (send `Authorization: Bearer <api key>`)")]
    Unauthorized,
    /// `/admin/reload` on a server started without an API key.
    #[error("administration endpoints need an API key; start the server with --api-key (SIGHUP still reloads)")]
    AdminDisabled,
    /// The queue holds too many samples already.
    #[error("the queue is full ({queued} samples waiting, capacity {capacity}); retry after {retry_after_s} s")]
    QueueFull {
        /// Samples waiting.
        queued: usize,
        /// The queue's capacity in samples.
        capacity: usize,
        /// Seconds the client should wait.
        retry_after_s: u64,
    },
    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The multiplier endpoints on a spec without a constrained combination.
    #[error("the spec has no constrained combination, so no multipliers ([combine] method = \"constrained\")")]
    NoMultipliers,
    /// A reload was asked for but the server has no spec file to reload from.
    #[error("the server was not started from a spec file; nothing to reload")]
    NoSpecFile,
    /// The spec did not load or build on reload; the old pipeline keeps serving.
    #[error("reload failed, still serving the previous spec: {message}")]
    Reload {
        /// The spec error, naming file and key.
        message: String,
    },
    /// No route.
    #[error("no such endpoint: {method} {path}")]
    NotFound {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// A broken invariant inside the server (a bug).
    #[error("internal error (a bug): {message}")]
    Internal {
        /// What broke.
        message: String,
    },
}

impl ServerError {
    /// The HTTP status of this error: the single mapping from errors to status codes.
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::BadJson { .. }
            | ServerError::BadHeader { .. }
            | ServerError::BodyRead { .. } => StatusCode::BAD_REQUEST,
            ServerError::Shape { .. }
            | ServerError::TooManySamples { .. }
            | ServerError::CompletionTooLong { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ServerError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ServerError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServerError::AdminDisabled => StatusCode::FORBIDDEN,
            ServerError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServerError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::NoSpecFile | ServerError::NoMultipliers => StatusCode::CONFLICT,
            ServerError::Reload { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ServerError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable snake-case code for the error, sent next to the message.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::BadJson { .. } => "bad_json",
            ServerError::Shape { .. } => "bad_shape",
            ServerError::TooManySamples { .. } => "too_many_samples",
            ServerError::CompletionTooLong { .. } => "completion_too_long",
            ServerError::BodyTooLarge { .. } => "body_too_large",
            ServerError::BodyTimeout { .. } => "body_timeout",
            ServerError::BodyRead { .. } => "body_read",
            ServerError::BadHeader { .. } => "bad_header",
            ServerError::Unauthorized => "unauthorized",
            ServerError::AdminDisabled => "admin_disabled",
            ServerError::QueueFull { .. } => "queue_full",
            ServerError::ShuttingDown => "shutting_down",
            ServerError::NoSpecFile => "no_spec_file",
            ServerError::NoMultipliers => "no_multipliers",
            ServerError::Reload { .. } => "reload_failed",
            ServerError::NotFound { .. } => "not_found",
            ServerError::Internal { .. } => "internal",
        }
    }

    /// A shape error for `field`.
    pub(crate) fn shape(field: impl Into<String>, message: impl Into<String>) -> ServerError {
        ServerError::Shape {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() }
        });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ServerError::QueueFull { retry_after_s, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            ServerError::ShuttingDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ServerError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
