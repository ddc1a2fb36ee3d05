//! The write-ahead log: each operation appended as one record (length, CRC-32, operation number, bytes) and
//! synced to disk before it is acknowledged. A record cut short by a crash fails its length or checksum
//! check; replay stops there and the tail is cut off, so the next append starts on a clean boundary. A
//! record that fails its checksum with more records after it is damage, not a crash: opening refuses.

use super::codec::DecodeError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest record accepted on replay (one upsert batch).
const MAX_RECORD: u64 = 1 << 30;
/// Length, the length's complement (so a damaged length is told from a write cut short), CRC-32 of the
/// operation number and bytes, operation number.
const HEADER: usize = 20;

/// An open log.
pub(crate) struct Wal {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Wal {
    /// Opens (or creates) the log and replays its records in order through `apply`, cutting off a torn
    /// tail. `apply` gets the operation number and the record's bytes.
    pub(crate) fn open(
        path: &Path,
        mut apply: impl FnMut(u64, &[u8]) -> Result<(), DecodeError>,
    ) -> std::io::Result<(Self, usize)> {
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        let size = file.metadata()?.len();
        let mut reader = std::io::BufReader::new(&mut file);
        let mut good = 0u64;
        let mut replayed = 0;
        let mut body = Vec::new();
        loop {
            let mut header = [0u8; HEADER];
            if good + HEADER as u64 > size || reader.read_exact(&mut header).is_err() {
                break;
            }
            let word = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
            let (length, complement, checksum) = (word(0), word(4), word(8));
            let operation = u64::from_le_bytes([
                header[12], header[13], header[14], header[15], header[16], header[17], header[18], header[19],
            ]);
            let length = u64::from(length);
            // A whole header is written before its body, so a crash can cut a body short but never leave a
            // header that disagrees with itself: that is damage.
            if complement != !(length as u32) || length > MAX_RECORD {
                return Err(damaged(path, good, size));
            }
            if good + HEADER as u64 + length > size {
                break;
            }
            body.resize(length as usize, 0);
            if reader.read_exact(&mut body).is_err() {
                break;
            }
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&header[12..]);
            hasher.update(&body);
            if hasher.finalize() != checksum {
                if good + HEADER as u64 + length < size {
                    // Records follow: damage, not a write cut short. Cutting here would throw away
                    // acknowledged writes, so refuse and say where.
                    return Err(damaged(path, good, size));
                }
                break;
            }
            if let Err(error) = apply(operation, &body) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: operation {operation} cannot be replayed: {error}", path.display()),
                ));
            }
            good += HEADER as u64 + length;
            replayed += 1;
        }
        drop(reader);
        if good < size {
            tracing_like_warning(path, size - good);
            file.set_len(good)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok((
            Wal {
                path: path.to_path_buf(),
                file,
                len: good,
            },
            replayed,
        ))
    }

    /// Appends one record and syncs it to disk.
    pub(crate) fn append(&mut self, operation: u64, bytes: &[u8]) -> std::io::Result<()> {
        let length = u32::try_from(bytes.len())
            .ok()
            .filter(|length| u64::from(*length) <= MAX_RECORD)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "an operation larger than 1 GiB"))?;
        let mut record = Vec::with_capacity(HEADER + bytes.len());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&operation.to_le_bytes());
        hasher.update(bytes);
        record.extend_from_slice(&length.to_le_bytes());
        record.extend_from_slice(&(!length).to_le_bytes());
        record.extend_from_slice(&hasher.finalize().to_le_bytes());
        record.extend_from_slice(&operation.to_le_bytes());
        record.extend_from_slice(bytes);
        if let Err(error) = self.file.write_all(&record).and_then(|()| self.file.sync_data()) {
            // Leave no partial record behind for the next append to follow.
            let _ = self.file.set_len(self.len);
            return Err(error);
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// Bytes in the log.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Empties the log (after a checkpoint holds everything in it).
    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }

    /// Where the log is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The error for a log damaged at byte `at` (of `size`).
fn damaged(path: &Path, at: u64, size: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "the record at byte {at} of {size} fails its checks with more of the log after it: the log is damaged; \
             move it aside to start without the writes from that byte on (path: {})",
            path.display()
        ),
    )
}

/// Says that a torn tail was cut off.
fn tracing_like_warning(path: &Path, bytes: u64) {
    tracing::warn!(
        log = %path.display(),
        bytes,
        "bytes after the last complete record of a vector log were cut off (a write interrupted by a crash)"
    );
}
