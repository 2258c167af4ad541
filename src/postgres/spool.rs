//! The spend spool: an append-only file of events not yet known to be in the database, and
//! the offset up to which they are.
//!
//! Lines are appended under a lock, one `write` each, before the caller's answer leaves the
//! process; the writer reads complete lines from the committed offset, and once everything is
//! committed a large file is truncated and started again.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Past this size, a fully committed spool is truncated.
const ROTATE_AT: u64 = 16 << 20;
/// At most this much is read for one batch.
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    file: Mutex<File>,
    reader: Mutex<File>,
    len: AtomicU64,
    committed: AtomicU64,
    max_backlog: u64,
}

/// Why a line was not appended.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// The backlog is at its bound.
    Full,
    /// The file could not be written.
    Io(io::Error),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, keeping at most `max_backlog` uncommitted bytes.
    pub(crate) fn open(dir: &Path, max_backlog: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("spend.jsonl");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let mut len = file.metadata()?.len();
        if len > 0 {
            // A line torn by a crash is closed, so the next one starts clean (the torn one is
            // skipped as unreadable).
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                len += 1;
            }
        }
        let committed = std::fs::read_to_string(dir.join("spend.offset"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|o| *o <= len)
            .unwrap_or(0);
        let reader = File::open(&path)?;
        Ok(Self {
            dir: dir.to_owned(),
            file: Mutex::new(file),
            reader: Mutex::new(reader),
            len: AtomicU64::new(len),
            committed: AtomicU64::new(committed),
            max_backlog,
        })
    }

    /// Bytes appended and not yet committed.
    pub(crate) fn backlog(&self) -> u64 {
        self.len
            .load(Ordering::Acquire)
            .saturating_sub(self.committed.load(Ordering::Acquire))
    }

    /// Appends one line (which ends with `\n`).
    pub(crate) fn append(&self, line: &[u8]) -> Result<(), AppendError> {
        let mut file = lock(&self.file);
        if self.backlog() + line.len() as u64 > self.max_backlog {
            return Err(AppendError::Full);
        }
        file.write_all(line).map_err(AppendError::Io)?;
        self.len.fetch_add(line.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// Complete lines from the committed offset (at most about a megabyte), and the offset
    /// after them.
    pub(crate) fn read(&self) -> io::Result<(Vec<Vec<u8>>, u64)> {
        let from = self.committed.load(Ordering::Acquire);
        let until = self.len.load(Ordering::Acquire);
        if until <= from {
            return Ok((Vec::new(), from));
        }
        let want = usize::try_from(until - from)
            .unwrap_or(usize::MAX)
            .min(READ_CHUNK);
        let mut buf = vec![0u8; want];
        {
            let mut reader = lock(&self.reader);
            reader.seek(SeekFrom::Start(from))?;
            reader.read_exact(&mut buf)?;
        }
        let mut lines = Vec::new();
        let mut at = 0;
        while let Some(end) = memchr::memchr(b'\n', &buf[at..]) {
            lines.push(buf[at..at + end].to_vec());
            at += end + 1;
        }
        if lines.is_empty() && want == READ_CHUNK {
            // One line longer than a chunk: it cannot be an event; skip it.
            lines.push(Vec::new());
            at = want;
        }
        Ok((lines, from + at as u64))
    }

    /// Notes that everything before `offset` is in the database.
    pub(crate) fn commit(&self, offset: u64) -> io::Result<()> {
        self.committed.store(offset, Ordering::Release);
        if offset >= ROTATE_AT {
            let file = lock(&self.file);
            if self.len.load(Ordering::Acquire) == offset {
                file.set_len(0)?;
                self.len.store(0, Ordering::Release);
                self.committed.store(0, Ordering::Release);
                drop(file);
                return self.save(0);
            }
        }
        self.save(offset)
    }

    fn save(&self, offset: u64) -> io::Result<()> {
        let tmp = self.dir.join("spend.offset.tmp");
        std::fs::write(&tmp, offset.to_string())?;
        std::fs::rename(&tmp, self.dir.join("spend.offset"))
    }
}
