//! The error of the layer that touches the live state: the providers and
//! the SQL and snapshot stores they use. It sits below all of them, so that
//! each can return it without depending on the providers.

/// Errors of the provider layer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{what}: {message}")]
    Failed { what: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the {provider} provider cannot {what}")]
    Unsupported {
        provider: &'static str,
        what: String,
    },
    #[error("another apply of app {app} is running ({holder})")]
    Locked { app: String, holder: String },
}

impl ProviderError {
    pub fn failed(what: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::Failed {
            what: what.into(),
            message: message.into(),
        }
    }
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ProviderError::Io {
            what: what.into(),
            source,
        }
    }
}
