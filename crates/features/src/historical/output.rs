//! The last pass: the entity frame is read again in its order and each view's joined partitions are merged back
//! onto it (the partition of a row is found again from its key), then written as Parquet through a temporary
//! file that is renamed into place only when complete.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};

use super::spill::Stored;
use crate::error::FeatureError;
use crate::keys;

/// Reads one view's joined partitions back in entity-row order.
pub struct ViewMerger {
    /// Join keys of the view, as entity-frame columns.
    pub keys: Vec<String>,
    cursors: Vec<Cursor>,
}

struct Cursor {
    batches: Box<dyn Iterator<Item = Result<RecordBatch, FeatureError>> + Send>,
    current: Option<RecordBatch>,
    offset: usize,
}

impl ViewMerger {
    /// A merger over the view's partitions (one per partition, in partition order).
    pub fn new(keys: Vec<String>, partitions: &[Stored]) -> Result<ViewMerger, FeatureError> {
        let cursors = partitions
            .iter()
            .map(|p| {
                Ok(Cursor {
                    batches: p.batches()?,
                    current: None,
                    offset: 0,
                })
            })
            .collect::<Result<_, FeatureError>>()?;
        Ok(ViewMerger { keys, cursors })
    }

    /// The feature columns for the entity rows `batch`, which are rows `first_row..` of the frame.
    pub fn next_columns(&mut self, batch: &RecordBatch, first_row: u64) -> Result<Vec<ArrayRef>, FeatureError> {
        let partitions = self.cursors.len();
        let rows = batch.num_rows();
        let which: Vec<usize> = if partitions == 1 {
            vec![0; rows]
        } else {
            let key_arrays: Vec<ArrayRef> = self
                .keys
                .iter()
                .map(|k| batch.column_by_name(k).expect("entity columns were checked").clone())
                .collect();
            let encoded = keys::encode(&key_arrays, rows).map_err(|m| lost(&m))?;
            (0..rows)
                .map(|i| {
                    if encoded.is_null(i) {
                        0
                    } else {
                        keys::partition_of(encoded.value(i), partitions)
                    }
                })
                .collect()
        };
        let mut slots: Vec<RecordBatch> = Vec::new();
        let mut slot_of_cursor: Vec<Option<usize>> = vec![None; partitions];
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(rows);
        for (i, &p) in which.iter().enumerate() {
            let cursor = &mut self.cursors[p];
            while cursor.current.as_ref().is_none_or(|b| cursor.offset >= b.num_rows()) {
                let next = cursor
                    .batches
                    .next()
                    .ok_or_else(|| lost("a partition ended before the entity frame"))??;
                cursor.current = Some(next);
                cursor.offset = 0;
                slot_of_cursor[p] = None;
            }
            let current = cursor.current.as_ref().expect("loaded");
            let row = current.column(0).as_primitive::<UInt64Type>().value(cursor.offset);
            if row != first_row + i as u64 {
                return Err(lost(&format!("row {} came back as row {row}", first_row + i as u64)));
            }
            let slot = match slot_of_cursor[p] {
                Some(slot) => slot,
                None => {
                    slots.push(current.clone());
                    slot_of_cursor[p] = Some(slots.len() - 1);
                    slots.len() - 1
                }
            };
            picks.push((slot, cursor.offset));
            cursor.offset += 1;
        }
        let feature_count = match slots.first() {
            Some(batch) => batch.num_columns() - 1,
            None => return Ok(Vec::new()),
        };
        let mut columns = Vec::with_capacity(feature_count);
        for feature in 0..feature_count {
            let arrays: Vec<&dyn Array> = slots.iter().map(|b| b.column(1 + feature).as_ref()).collect();
            columns.push(arrow_select::interleave::interleave(&arrays, &picks).map_err(|e| lost(&e.to_string()))?);
        }
        Ok(columns)
    }
}

fn lost(message: &str) -> FeatureError {
    FeatureError::io(
        "merging joined partitions (the entity frame or a spill file changed during the join)",
        Path::new("(spill)"),
        message,
    )
}
