//! The query crate's one error type.

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter (CLI flag / HTTP query parameter) is missing or malformed.
    /// Exit code 2 on the command line, 400 over HTTP.
    #[error("--{param}: {message}")]
    BadParam {
        /// The flag / parameter name, without dashes.
        param: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// The store failed while reading.
    #[error("reading events: {0}")]
    Source(String),
}

impl QueryError {
    /// Shorthand for [`QueryError::BadParam`].
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        QueryError::BadParam {
            param: param.to_string(),
            message: message.into(),
        }
    }
}
