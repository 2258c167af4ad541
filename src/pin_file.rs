//! [`PinFile`]: pins kept in a small JSON file, so that a restart does not trust anew.
//!
//! The file is rewritten whole (to a temporary file, then renamed over the old one) each time
//! pins are learned or approved, which happens when a server's definitions are first listed or
//! change, never per request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::engine::{PinDigest, PinKind, PinParts, PinStore, StoredPin};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    version: u32,
    pins: Vec<FilePin>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePin {
    kind: String,
    server: String,
    name: String,
    digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<Vec<String>>,
}

type Key = (PinKind, Box<str>, Box<str>);

/// Pins in a JSON file (see the [module docs](self)).
#[derive(Debug)]
pub struct PinFile {
    path: PathBuf,
    pins: Mutex<Pins>,
    /// When the file was last read or written by this process.
    modified: Mutex<Option<SystemTime>>,
    problem: Mutex<Option<String>>,
}

/// A pin file that cannot be read.
#[derive(Debug)]
pub struct PinFileError(String);

impl std::fmt::Display for PinFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PinFileError {}

type Pins = BTreeMap<Key, (PinDigest, Option<PinParts>)>;

/// The pins in the file at `path` (none if it does not exist), and when it was last modified.
fn read(path: &Path) -> Result<(Pins, Option<SystemTime>), PinFileError> {
    let shown = path.display().to_string();
    let mut pins = Pins::new();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((pins, None)),
        Err(e) => return Err(PinFileError(format!("pin file {shown}: {e}"))),
    };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let body: FileBody = serde_json::from_slice(&bytes)
        .map_err(|e| PinFileError(format!("pin file {shown}: {e}")))?;
    if body.version != 1 {
        return Err(PinFileError(format!(
            "pin file {shown}: version {} is not known",
            body.version
        )));
    }
    for p in body.pins {
        let kind = p.kind.parse::<PinKind>().map_err(|()| {
            PinFileError(format!("pin file {shown}: kind {:?} is not known", p.kind))
        })?;
        let digest = p
            .digest
            .parse::<PinDigest>()
            .map_err(|e| PinFileError(format!("pin file {shown}: {e}")))?;
        let parts = p.parts.as_deref().and_then(PinParts::from_hex);
        pins.insert((kind, p.server.into(), p.name.into()), (digest, parts));
    }
    Ok((pins, modified))
}

fn stored(pins: &Pins) -> Vec<StoredPin> {
    pins.iter()
        .map(|((kind, server, name), (digest, parts))| StoredPin {
            kind: *kind,
            server: server.clone(),
            name: name.clone(),
            digest: *digest,
            parts: *parts,
        })
        .collect()
}

impl PinFile {
    /// Opens the pin file at `path` (a missing file holds no pins) and returns it with the pins
    /// it holds.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read, or is not a pin file: nothing is trusted anew over
    /// a file that could not be read.
    pub fn open(path: impl Into<PathBuf>) -> Result<(Self, Vec<StoredPin>), PinFileError> {
        let path = path.into();
        let (pins, modified) = read(&path)?;
        let all = stored(&pins);
        Ok((
            Self {
                path,
                pins: Mutex::new(pins),
                modified: Mutex::new(modified),
                problem: Mutex::new(None),
            },
            all,
        ))
    }

    /// The pins of the file if someone else changed it since it was last read or written (an
    /// administrator's edit): give them to [`PinBook::absorb`](crate::engine::PinBook::absorb)
    /// and they take effect without a restart. `Ok(None)` when it is unchanged.
    ///
    /// # Errors
    ///
    /// The changed file cannot be read; the pins held so far stay.
    pub fn reread(&self) -> Result<Option<Vec<StoredPin>>, PinFileError> {
        // The same order as `save` (pins, then the time): never one waiting on the other.
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        let mut modified = self.modified.lock().unwrap_or_else(PoisonError::into_inner);
        let now = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if now == *modified {
            return Ok(None);
        }
        let (read, at) = read(&self.path)?;
        *pins = read;
        *modified = at;
        Ok(Some(stored(&pins)))
    }

    /// Where the pins are kept.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, pins: &Pins) -> std::io::Result<()> {
        let body = FileBody {
            version: 1,
            pins: pins
                .iter()
                .map(|((kind, server, name), (digest, parts))| FilePin {
                    kind: kind.as_str().to_owned(),
                    server: server.to_string(),
                    name: name.to_string(),
                    digest: digest.to_string(),
                    parts: parts.map(|p| p.to_hex()),
                })
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&body).expect("pins serialise");
        text.push(b'\n');
        let mut temp = self.path.clone().into_os_string();
        temp.push(".tmp");
        std::fs::write(&temp, &text)?;
        std::fs::rename(&temp, &self.path)?;
        *self.modified.lock().unwrap_or_else(PoisonError::into_inner) =
            std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
        Ok(())
    }
}

impl PinStore for PinFile {
    fn save(&self, new: Vec<StoredPin>) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        for p in new {
            pins.insert((p.kind, p.server, p.name), (p.digest, p.parts));
        }
        let outcome = self.write(&pins);
        let mut problem = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        *problem = outcome.err().map(|e| {
            let message = format!("pin file {}: {e}", self.path.display());
            crate::decision_events::warn(&message);
            message
        });
    }

    fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
