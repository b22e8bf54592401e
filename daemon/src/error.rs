//! The engine's error type: every failure a page can see carries a protocol [`ErrorCode`]
//! (docs/protocol.md, "Error codes"), so it reaches the page as the right DOMException name.

use vdimedia_protocol::message::{ErrorBody, ErrorCode};

/// An error answered to a request. `code` selects the DOMException name the SDK throws;
/// `message` is the human sentence (also logged); `constraint` names the failing constraint
/// for `OverconstrainedError`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct EngineError {
    pub code: ErrorCode,
    pub message: String,
    pub constraint: Option<String>,
}

impl EngineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), constraint: None }
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidState, message)
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn operation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::OperationError, message)
    }
    pub fn overconstrained(constraint: &str, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Overconstrained,
            message: message.into(),
            constraint: Some(constraint.to_string()),
        }
    }
    /// The wire form of this error.
    pub fn to_body(&self) -> ErrorBody {
        let mut body = ErrorBody::new(self.code, self.message.clone());
        body.constraint = self.constraint.clone();
        body
    }
}

pub type EngineResult<T> = Result<T, EngineError>;
