//! Row fingerprints for counting duplicate rows: a 64-bit hash per row over the columns read, so duplicates are
//! found by sorting fingerprints instead of keeping rows. Two different rows share a fingerprint with
//! probability about n²/2⁶⁵ (≈ 3·10⁻⁸ for a million rows).

use std::hash::Hasher;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{ArrowError, DataType};

use crate::kind::ValueKind;

/// A multiply-rotate hasher in the style of rustc's FxHash: fast, not resistant to chosen collisions (the data
/// are the user's own files).
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.write_u64(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        }
        let mut tail = 0u64;
        for (i, byte) in chunks.remainder().iter().enumerate() {
            tail |= (*byte as u64) << (8 * i);
        }
        self.write_u64(tail ^ bytes.len() as u64);
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(SEED);
    }

    fn write_u8(&mut self, value: u8) {
        self.write_u64(value as u64);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const NULL_MARK: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(state: &mut u64, value: u64) {
    *state = (state.rotate_left(5) ^ value).wrapping_mul(SEED);
}

fn text_hash(text: &str) -> u64 {
    let mut hasher = FastHasher::default();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Mixes one column of a batch into the per-row fingerprints `hashes` (one per row of the batch).
pub fn mix_column(hashes: &mut [u64], array: &ArrayRef) -> Result<(), ArrowError> {
    let data_type = array.data_type();
    match ValueKind::of(data_type) {
        ValueKind::Numeric | ValueKind::Datetime => {
            let target = if ValueKind::of(data_type) == ValueKind::Numeric {
                DataType::Float64
            } else {
                DataType::Int64
            };
            let values = arrow_cast::cast(array, &target)?;
            let floats = arrow_cast::cast(&values, &DataType::Float64)?;
            for (hash, value) in hashes.iter_mut().zip(floats.as_primitive::<Float64Type>().iter()) {
                mix(
                    hash,
                    value.map_or(NULL_MARK, |v| if v == 0.0 { 0 } else { v.to_bits() }),
                );
            }
        }
        ValueKind::Categorical => {
            if let Some(booleans) = array.as_boolean_opt() {
                for (hash, value) in hashes.iter_mut().zip(booleans.iter()) {
                    mix(hash, value.map_or(NULL_MARK, u64::from));
                }
            } else if let Some(dictionary) = array.as_dictionary_opt::<Int32Type>() {
                let strings = arrow_cast::cast(dictionary.values(), &DataType::Utf8)?;
                let per_value: Vec<u64> = strings
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map_or(NULL_MARK, text_hash))
                    .collect();
                for (hash, key) in hashes.iter_mut().zip(dictionary.keys().iter()) {
                    mix(hash, key.map_or(NULL_MARK, |k| per_value[k as usize]));
                }
            } else {
                let strings = arrow_cast::cast(array, &DataType::Utf8)?;
                for (hash, value) in hashes.iter_mut().zip(strings.as_string::<i32>().iter()) {
                    mix(hash, value.map_or(NULL_MARK, text_hash));
                }
            }
        }
        ValueKind::Other => {
            for (row, hash) in hashes.iter_mut().enumerate() {
                mix(hash, if array.is_null(row) { NULL_MARK } else { 1 });
            }
        }
    }
    Ok(())
}

/// Rows whose fingerprint equals an earlier row's.
pub fn duplicate_count(mut fingerprints: Vec<u64>) -> u64 {
    fingerprints.sort_unstable();
    let total = fingerprints.len();
    fingerprints.dedup();
    (total - fingerprints.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn equal_rows_share_fingerprints_and_others_do_not() {
        let numbers: ArrayRef = Arc::new(arrow_array::Float64Array::from(vec![
            Some(1.0),
            Some(1.0),
            None,
            Some(-0.0),
            Some(0.0),
        ]));
        let labels: ArrayRef = Arc::new(arrow_array::StringArray::from(vec!["a", "a", "a", "b", "b"]));
        let mut hashes = vec![0u64; 5];
        mix_column(&mut hashes, &numbers).unwrap();
        mix_column(&mut hashes, &labels).unwrap();
        assert_eq!(hashes[0], hashes[1]);
        assert_ne!(hashes[0], hashes[2]);
        assert_eq!(hashes[3], hashes[4], "-0 and 0 are the same value");
        assert_eq!(duplicate_count(hashes), 2);
    }
}
