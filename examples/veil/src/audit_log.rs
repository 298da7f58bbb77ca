//! `--audit-log FILE|-`: the engine's audit records (one per finished tunnel and per
//! refused request) as JSON lines, appended to FILE or written to standard output, off the
//! data path: the driver hands records over a bounded channel and drops them, counted,
//! when this writer falls behind (`veil_audit_records_dropped_total` and the driver's
//! warnings).
//!
//! Each line is the record (`veil_engine::AuditRecord`) plus `time_unix_ms`, when it was
//! written (the engine has no wall clock).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::mpsc;
use veil_engine::AuditRecord;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// Standard output (`-`).
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

impl AuditTarget {
    /// `-` or a path.
    pub fn parse(text: &Path) -> Self {
        if text == Path::new("-") {
            Self::Stdout
        } else {
            Self::File(text.to_owned())
        }
    }
}

/// One JSON line.
#[derive(Serialize)]
struct Line<'a> {
    time_unix_ms: u64,
    #[serde(flatten)]
    record: &'a AuditRecord,
}

/// Opens the target (so that a path that cannot be written fails the start).
pub(crate) fn open(target: &AuditTarget) -> anyhow::Result<Box<dyn Write + Send>> {
    Ok(match target {
        AuditTarget::Stdout => Box::new(std::io::stdout()),
        AuditTarget::File(path) => Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the audit log {}", path.display()))?,
        )),
    })
}

/// Writes records until the node stops (tokio); flushes after each batch.
pub(crate) async fn write(
    mut records: mpsc::Receiver<AuditRecord>,
    mut out: Box<dyn Write + Send>,
) {
    let mut batch = Vec::with_capacity(256);
    while records.recv_many(&mut batch, 256).await > 0 {
        write_batch(&mut out, batch.drain(..));
    }
}

/// Writes records until the edge stops, on a thread of its own (the glommio edge's cores
/// hand them over a channel); flushes after each batch.
pub(crate) fn write_blocking(
    records: &std::sync::mpsc::Receiver<AuditRecord>,
    mut out: Box<dyn Write + Send>,
) {
    while let Ok(first) = records.recv() {
        let batch = std::iter::once(first).chain(records.try_iter().take(255));
        write_batch(&mut out, batch);
    }
}

/// One batch of lines, stamped with the time now, then a flush.
fn write_batch(out: &mut Box<dyn Write + Send>, records: impl Iterator<Item = AuditRecord>) {
    let time_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    for record in records {
        let line = Line {
            time_unix_ms,
            record: &record,
        };
        let written = serde_json::to_writer(&mut *out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            tracing::warn!(error = %e, "audit log: write failed");
        }
    }
    if let Err(e) = out.flush() {
        tracing::warn!(error = %e, "audit log: flush failed");
    }
}
