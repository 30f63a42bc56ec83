//! [`Error`]: why a value could not be packed or read into a type.

use std::fmt;

use crate::PackedError;

/// Why [`to_vec`](crate::to_vec) or [`from_slice`](crate::from_slice) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    offset: Option<usize>,
}

impl Error {
    /// An error with `message`, at no particular byte.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            offset: None,
        }
    }

    /// The same error, at byte `offset` of the buffer read (kept when one is set).
    pub(crate) fn at(mut self, offset: usize) -> Error {
        self.offset.get_or_insert(offset);
        self
    }

    /// What went wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The byte of the packed buffer where reading failed, if reading did.
    pub fn offset(&self) -> Option<usize> {
        self.offset
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{} (at byte {offset})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl serde::ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }
}

impl From<PackedError> for Error {
    fn from(e: PackedError) -> Self {
        Error::new(e.to_string())
    }
}
