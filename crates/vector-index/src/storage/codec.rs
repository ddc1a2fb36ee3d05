//! The little-endian binary encoding of log records and segment files, and a reader that checks every
//! length it is told against the bytes that are really there before reserving memory for it.

use crate::flat::Flat;
use crate::point_id::PointId;
use serde_json::Value;

/// Appends encoded values to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }
    pub(crate) fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn f32(&mut self, value: f32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn len(&mut self, value: usize) {
        self.u64(value as u64);
    }
    pub(crate) fn blob(&mut self, value: &[u8]) {
        self.len(value.len());
        self.bytes.extend_from_slice(value);
    }
    pub(crate) fn str(&mut self, value: &str) {
        self.blob(value.as_bytes());
    }
    pub(crate) fn json(&mut self, value: &Value) {
        // Serialising a serde_json::Value cannot fail.
        self.blob(&serde_json::to_vec(value).unwrap_or_default());
    }
    pub(crate) fn f32s(&mut self, values: &[f32]) {
        self.len(values.len());
        self.bytes.reserve(values.len() * 4);
        values
            .iter()
            .for_each(|value| self.bytes.extend_from_slice(&value.to_le_bytes()));
    }
    pub(crate) fn u32s(&mut self, values: impl ExactSizeIterator<Item = u32>) {
        self.len(values.len());
        values.for_each(|value| self.bytes.extend_from_slice(&value.to_le_bytes()));
    }
    pub(crate) fn id(&mut self, id: PointId) {
        match id {
            PointId::Num(number) => {
                self.u8(0);
                self.u64(number);
            }
            PointId::Uuid(bits) => {
                self.u8(1);
                self.bytes.extend_from_slice(&bits.to_le_bytes());
            }
        }
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Reads values back, refusing lengths longer than what remains.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if count > self.remaining() {
            return Err(DecodeError(format!(
                "{count} bytes declared at offset {} but only {} remain",
                self.at,
                self.remaining()
            )));
        }
        let taken = &self.bytes[self.at..self.at + count];
        self.at += count;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    /// A plain number (a parameter, not a count of what follows).
    pub(crate) fn number(&mut self) -> Result<usize, DecodeError> {
        let value = self.u64()?;
        usize::try_from(value).map_err(|_| DecodeError(format!("number {value} is too large")))
    }

    /// A count of items of `item_size` bytes each, checked against what remains.
    pub(crate) fn len(&mut self, item_size: usize) -> Result<usize, DecodeError> {
        let declared = self.u64()?;
        let count = usize::try_from(declared).map_err(|_| DecodeError(format!("count {declared} is too large")))?;
        if count.saturating_mul(item_size.max(1)) > self.remaining() {
            return Err(DecodeError(format!(
                "{count} items declared at offset {} but only {} bytes remain",
                self.at,
                self.remaining()
            )));
        }
        Ok(count)
    }

    pub(crate) fn blob(&mut self) -> Result<&'a [u8], DecodeError> {
        let count = self.len(1)?;
        self.take(count)
    }
    pub(crate) fn str(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.blob()?.to_vec()).map_err(|_| DecodeError("a name is not UTF-8".into()))
    }
    pub(crate) fn json(&mut self) -> Result<Value, DecodeError> {
        serde_json::from_slice(self.blob()?).map_err(|error| DecodeError(format!("a payload is not JSON: {error}")))
    }
    pub(crate) fn f32s(&mut self) -> Result<Vec<f32>, DecodeError> {
        let count = self.len(4)?;
        let bytes = self.take(count * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect())
    }
    /// Like `f32s`, straight into the array that keeps them (no second copy of a large vector file).
    pub(crate) fn f32s_flat(&mut self) -> Result<Flat<f32>, DecodeError> {
        let count = self.len(4)?;
        let bytes = self.take(count * 4)?;
        let mut values = Flat::with_capacity(count);
        let mut run = Vec::with_capacity(16_384);
        for chunk in bytes.chunks(16_384 * 4) {
            run.clear();
            run.extend(
                chunk
                    .chunks_exact(4)
                    .map(|value| f32::from_le_bytes([value[0], value[1], value[2], value[3]])),
            );
            values.extend_from_slice(&run);
        }
        Ok(values)
    }
    /// Like `bytes`, straight into the array that keeps them.
    pub(crate) fn bytes_flat(&mut self) -> Result<Flat<u8>, DecodeError> {
        let bytes = self.blob()?;
        let mut values = Flat::with_capacity(bytes.len());
        values.extend_from_slice(bytes);
        Ok(values)
    }
    pub(crate) fn u32s(&mut self) -> Result<Vec<u32>, DecodeError> {
        let count = self.len(4)?;
        let bytes = self.take(count * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect())
    }
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.blob()?.to_vec())
    }
    pub(crate) fn id(&mut self) -> Result<PointId, DecodeError> {
        match self.u8()? {
            0 => Ok(PointId::Num(self.u64()?)),
            1 => Ok(PointId::Uuid(u128::from_le_bytes(self.array()?))),
            tag => Err(DecodeError(format!("unknown id tag {tag}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A declared count followed by `tail`.
    fn declared(count: u64, tail: &[u8]) -> Vec<u8> {
        let mut bytes = count.to_le_bytes().to_vec();
        bytes.extend_from_slice(tail);
        bytes
    }

    #[test]
    fn counts_larger_than_the_file_are_refused_before_memory_is_reserved() {
        for count in [1u64 << 60, u64::MAX, (u64::MAX / 4) + 1, 5] {
            let bytes = declared(count, &[0; 16]);
            assert!(Reader::new(&bytes).f32s_flat().is_err(), "{count}");
            assert!(Reader::new(&bytes).bytes_flat().is_err() || count <= 16, "{count}");
        }
    }

    proptest! {
        /// Any declared count and any bytes after it: the values it names when they are all there, else an
        /// error; never a panic or an allocation of the declared size.
        #[test]
        fn declared_counts_are_read_or_refused(
            count in prop_oneof![0u64..64, any::<u64>()],
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let bytes = declared(count, &tail);
            match Reader::new(&bytes).f32s_flat() {
                Ok(values) => {
                    prop_assert!(count * 4 <= tail.len() as u64);
                    prop_assert_eq!(values.len() as u64, count);
                    for (value, chunk) in values.iter().zip(tail.chunks_exact(4)) {
                        prop_assert_eq!(value.to_bits(), u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
                    }
                }
                Err(_) => prop_assert!(count.saturating_mul(4) > tail.len() as u64),
            }
            match Reader::new(&bytes).bytes_flat() {
                Ok(values) => prop_assert_eq!(values.as_slice(), &tail[..count as usize]),
                Err(_) => prop_assert!(count > tail.len() as u64),
            }
        }
    }
}
