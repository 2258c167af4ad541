//! [`JsonlSink`]: audit events appended to a file, one JSON object per line.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::{AuditEvent, AuditSink, SinkError};

/// Appends each event as one line of JSON to a file (created if missing, never truncated),
/// flushed after every batch.
#[derive(Debug)]
pub struct JsonlSink {
    file: Mutex<BufWriter<File>>,
}

impl JsonlSink {
    /// Opens `path` for appending.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or created.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Mutex::new(BufWriter::new(file)),
        })
    }
}

impl AuditSink for JsonlSink {
    fn write(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        for e in events {
            serde_json::to_writer(&mut *file, e)?;
            file.write_all(b"\n")?;
        }
        file.flush()?;
        Ok(())
    }
}
