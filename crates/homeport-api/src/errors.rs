//! Every failure of a route as one type: handlers return `Result<_, ApiError>` and `?` their way
//! through; each error of the core maps to its HTTP status here, once.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use homeport_core::{
    AutoUpdateError, BackupOpError, DeployRefused, LogError, MetricsError, NotFound, ReloadError,
    SettingsError,
};
use homeport_types::Problem;
use serde::de::DeserializeOwned;

/// A refused or failed request: its status, the body's `kind` and `message`, and for an invalid
/// config edit the problems found.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub problems: Option<Vec<Problem>>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            problems: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.problems {
            Some(problems) => (
                self.status,
                Json(serde_json::json!({
                    "kind": self.kind,
                    "message": self.message,
                    "problems": problems,
                })),
            )
                .into_response(),
            None => (
                self.status,
                Json(homeport_types::ApiError {
                    kind: self.kind.to_owned(),
                    message: self.message,
                }),
            )
                .into_response(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    /// 415 when the body is not JSON, 400 when it is not the JSON expected.
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(r) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                r.body_text(),
            ),
            // The body limit: 413, as a client expects, and not a complaint about its JSON.
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(r.status(), "payload_too_large", r.body_text())
            }
            r => Self::bad_request(r.body_text()),
        }
    }
}

impl From<NotFound> for ApiError {
    fn from(e: NotFound) -> Self {
        Self::not_found(e.to_string())
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::NotFound(e) => e.into(),
            LogError::Stopped(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "search_budget",
                e.to_string(),
            ),
            e => Self::internal(e.to_string()),
        }
    }
}

impl From<MetricsError> for ApiError {
    fn from(e: MetricsError) -> Self {
        match e {
            MetricsError::NotFound(e) => e.into(),
            MetricsError::Invalid(m) => Self::bad_request(m),
            e => Self::internal(e.to_string()),
        }
    }
}

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> Self {
        let message = e.to_string();
        match e {
            SettingsError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            SettingsError::Invalid(problems) => Self {
                problems: Some(problems),
                ..Self::new(StatusCode::BAD_REQUEST, "invalid_config", message)
            },
            SettingsError::Edit(_) => Self::not_found(message),
            SettingsError::Io(..) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "io", message),
            SettingsError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
        }
    }
}

impl From<AutoUpdateError> for ApiError {
    fn from(e: AutoUpdateError) -> Self {
        let message = e.to_string();
        match e {
            AutoUpdateError::NotFound(_) => Self::not_found(message),
            AutoUpdateError::NotConfigured(_) => {
                Self::new(StatusCode::BAD_REQUEST, "not_configured", message)
            }
            AutoUpdateError::Store(_) => Self::internal(message),
        }
    }
}

impl From<ReloadError> for ApiError {
    fn from(e: ReloadError) -> Self {
        let problems =
            e.0.0
                .iter()
                .map(|d| homeport_types::Problem {
                    field: d.field.clone(),
                    line: d.line,
                    column: d.column,
                    message: d.message.clone(),
                    help: d.help.clone(),
                })
                .collect();
        Self {
            problems: Some(problems),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_config",
                e.to_string(),
            )
        }
    }
}

impl From<BackupOpError> for ApiError {
    fn from(e: BackupOpError) -> Self {
        let status = match &e {
            BackupOpError::NotFound(_) | BackupOpError::NoBackup(_) | BackupOpError::NotHere(_) => {
                StatusCode::NOT_FOUND
            }
            BackupOpError::Busy(_) => StatusCode::CONFLICT,
            BackupOpError::Refused(_) => StatusCode::BAD_REQUEST,
            BackupOpError::Backup(_)
            | BackupOpError::Failed(_)
            | BackupOpError::RestoreFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            BackupOpError::Store(_) | BackupOpError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, "backup", e.to_string())
    }
}

impl From<DeployRefused> for ApiError {
    fn from(e: DeployRefused) -> Self {
        let message = e.to_string();
        match e {
            DeployRefused::Busy { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            DeployRefused::NotFound(_) => Self::not_found(message),
            DeployRefused::Invalid(_) => Self::bad_request(message),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(e.to_string())
    }
}

/// A JSON body whose rejection is an [`ApiError`].
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(Body(v))
    }
}
