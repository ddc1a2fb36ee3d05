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
const HEADER: usize = 16;

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
            let length = u64::from(u32::from_le_bytes([header[0], header[1], header[2], header[3]]));
            let checksum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let operation = u64::from_le_bytes([
                header[8], header[9], header[10], header[11], header[12], header[13], header[14], header[15],
            ]);
            if length > MAX_RECORD || good + HEADER as u64 + length > size {
                break;
            }
            body.resize(length as usize, 0);
            if reader.read_exact(&mut body).is_err() {
                break;
            }
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&header[8..]);
            hasher.update(&body);
            if hasher.finalize() != checksum {
                let end = good + HEADER as u64 + length;
                if end < size {
                    // Records follow: this is damage, not a write cut short by a crash. Cutting here would
                    // throw away acknowledged writes, so refuse and say where.
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{}: the record at byte {good} fails its checksum and {} bytes follow it: the log is                              damaged; move it aside to start without the writes from that byte on",
                            path.display(),
                            size - end
                        ),
                    ));
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

/// Says that a torn tail was cut off.
fn tracing_like_warning(path: &Path, bytes: u64) {
    tracing::warn!(
        log = %path.display(),
        bytes,
        "bytes after the last complete record of a vector log were cut off (a write interrupted by a crash)"
    );
}
