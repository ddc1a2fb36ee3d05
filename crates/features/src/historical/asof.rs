//! The as-of join of one partition: for each entity row, the source row with equal key whose event time is the
//! latest at or before the entity time (ties: the latest created time, a missing created time counting as the
//! earliest), kept only when it is no older than the view's TTL. Both bounds are inclusive, as in Feast.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::FixedState;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BinaryArray, Int64Array, RecordBatch, UInt32Array};
use arrow_schema::SchemaRef;

use crate::error::FeatureError;

/// Column positions in a partition's entity batches: key, time, row number.
pub const ENTITY_KEY: usize = 0;
pub const ENTITY_TIME: usize = 1;
pub const ENTITY_ROW: usize = 2;
/// Column positions in a partition's source batches: key, event time, created time, then the features.
pub const SOURCE_KEY: usize = 0;
pub const SOURCE_TIME: usize = 1;
pub const SOURCE_CREATED: usize = 2;
pub const SOURCE_FEATURES: usize = 3;

/// Joins one partition. `output` is the schema `(row, features...)`; the result holds one row per entity row,
/// in the order the entity rows came, cut into batches of at most `chunk_rows`. Also returns how many entity
/// rows found a value.
pub fn join_partition(
    entities: &[RecordBatch],
    source: &[RecordBatch],
    ttl_nanos: Option<i64>,
    output: &SchemaRef,
    chunk_rows: usize,
) -> Result<(Vec<RecordBatch>, u64), FeatureError> {
    let internal = |e: arrow_schema::ArrowError| FeatureError::io("joining a partition", "(memory)", e);
    if entities.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let entity_schema = entities[0].schema();
    let entities = arrow_select::concat::concat_batches(&entity_schema, entities).map_err(internal)?;
    let e_keys = entities.column(ENTITY_KEY).as_binary::<i32>();
    let e_times = entities.column(ENTITY_TIME).as_primitive::<Int64Type>();
    let e_rows = entities.column(ENTITY_ROW).clone();

    let feature_count = output.fields().len() - 1;
    let (s_keys, s_times, s_created, features): (BinaryArray, Int64Array, Int64Array, Vec<ArrayRef>) =
        if source.is_empty() {
            let features = output.fields()[1..]
                .iter()
                .map(|f| arrow_array::new_empty_array(f.data_type()))
                .collect();
            (
                BinaryArray::from_vec(vec![]),
                Int64Array::from(Vec::<i64>::new()),
                Int64Array::from(Vec::<i64>::new()),
                features,
            )
        } else {
            let source = arrow_select::concat::concat_batches(&source[0].schema(), source).map_err(internal)?;
            let features = (0..feature_count)
                .map(|i| source.column(SOURCE_FEATURES + i).clone())
                .collect();
            (
                source.column(SOURCE_KEY).as_binary::<i32>().clone(),
                source.column(SOURCE_TIME).as_primitive::<Int64Type>().clone(),
                source.column(SOURCE_CREATED).as_primitive::<Int64Type>().clone(),
                features,
            )
        };

    let matches = match_rows(e_keys, e_times, &s_keys, &s_times, &s_created, ttl_nanos);
    let matched = matches.iter().filter(|m| m.is_some()).count() as u64;

    let mut batches = Vec::new();
    let total = entities.num_rows();
    let mut start = 0;
    while start < total {
        let end = (start + chunk_rows.max(1)).min(total);
        let indices = UInt32Array::from(matches[start..end].to_vec());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(feature_count + 1);
        columns.push(e_rows.slice(start, end - start));
        for feature in &features {
            columns.push(arrow_select::take::take(feature.as_ref(), &indices, None).map_err(internal)?);
        }
        batches.push(RecordBatch::try_new(output.clone(), columns).map_err(internal)?);
        start = end;
    }
    debug_assert!(
        batches
            .iter()
            .all(|b| b.column(0).as_primitive::<UInt64Type>().null_count() == 0)
    );
    Ok((batches, matched))
}

/// For each entity row (in its order), the position of its source row, if any.
///
/// Rows are grouped by key through a hash map (each distinct key gets a dense id, then a counting sort puts
/// each key's rows together); only the rows of one key are sorted by time. That is linear in the rows but for
/// the small per-key sorts, where sorting whole partitions by key bytes was dominated by byte comparisons.
pub fn match_rows(
    e_keys: &BinaryArray,
    e_times: &Int64Array,
    s_keys: &BinaryArray,
    s_times: &Int64Array,
    s_created: &Int64Array,
    ttl_nanos: Option<i64>,
) -> Vec<Option<u32>> {
    let mut ids: HashMap<&[u8], u32, FixedState> = HashMap::with_capacity_and_hasher(1024, FixedState::default());
    // Source rows without a key or an event time were dropped before partitioning.
    let source_ids: Vec<u32> = (0..s_keys.len())
        .map(|s| {
            let next = ids.len() as u32;
            *ids.entry(s_keys.value(s)).or_insert(next)
        })
        .collect();
    let groups = ids.len();
    let source_order = counting_sort(&source_ids, groups);
    let created = |s: usize| {
        if s_created.is_null(s) {
            None
        } else {
            Some(s_created.value(s))
        }
    };

    let mut entity_ids = vec![u32::MAX; e_keys.len()];
    for (e, id) in entity_ids.iter_mut().enumerate() {
        if e_keys.is_null(e) || e_times.is_null(e) {
            continue;
        }
        if let Some(found) = ids.get(e_keys.value(e)) {
            *id = *found;
        }
    }
    let entity_order = counting_sort(&entity_ids, groups);

    let mut matches = vec![None; e_keys.len()];
    let mut source_rows: Vec<u32> = Vec::new();
    let mut entity_rows: Vec<u32> = Vec::new();
    for group in 0..groups {
        source_rows.clear();
        source_rows.extend_from_slice(&source_order.rows[source_order.starts[group]..source_order.starts[group + 1]]);
        entity_rows.clear();
        entity_rows.extend_from_slice(&entity_order.rows[entity_order.starts[group]..entity_order.starts[group + 1]]);
        if entity_rows.is_empty() {
            continue;
        }
        // None (no created time) orders first, so it loses every tie on event time.
        source_rows.sort_unstable_by_key(|&s| (s_times.value(s as usize), created(s as usize)));
        entity_rows.sort_unstable_by_key(|&e| e_times.value(e as usize));
        let mut j = 0usize;
        let mut best: Option<usize> = None;
        for &e in &entity_rows {
            let e = e as usize;
            let at = e_times.value(e);
            while j < source_rows.len() && s_times.value(source_rows[j] as usize) <= at {
                best = Some(source_rows[j] as usize);
                j += 1;
            }
            if let Some(s) = best {
                let fresh = ttl_nanos.is_none_or(|ttl| s_times.value(s) >= at.saturating_sub(ttl));
                if fresh {
                    matches[e] = Some(s as u32);
                }
            }
        }
    }
    matches
}

/// Row positions grouped by id (ids `>= groups` are left out), with where each group starts.
struct Grouped {
    rows: Vec<u32>,
    starts: Vec<usize>,
}

fn counting_sort(ids: &[u32], groups: usize) -> Grouped {
    let mut starts = vec![0usize; groups + 1];
    for &id in ids {
        if (id as usize) < groups {
            starts[id as usize + 1] += 1;
        }
    }
    for g in 0..groups {
        starts[g + 1] += starts[g];
    }
    let mut next = starts.clone();
    let mut rows = vec![0u32; starts[groups]];
    for (row, &id) in ids.iter().enumerate() {
        if (id as usize) < groups {
            rows[next[id as usize]] = row as u32;
            next[id as usize] += 1;
        }
    }
    Grouped { rows, starts }
}

/// The schema of a partition's output: the entity row number, then the features.
pub fn output_schema(features: &[arrow_schema::Field]) -> SchemaRef {
    let mut fields = vec![arrow_schema::Field::new("__row", arrow_schema::DataType::UInt64, false)];
    fields.extend(features.iter().cloned());
    Arc::new(arrow_schema::Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(values: &[Option<&[u8]>]) -> BinaryArray {
        BinaryArray::from_opt_vec(values.to_vec())
    }

    #[test]
    fn picks_the_latest_eligible_row_with_inclusive_ttl_bounds() {
        // Entity driver `a` at 10:00 (600 minutes), TTL 2 h: 07:30 is too old, 08:00 is eligible (inclusive),
        // 09:59 is newest and chosen, 10:01 is in the future.
        let minute = 60_000_000_000i64;
        let e_keys = keys(&[Some(b"a"), Some(b"a"), Some(b"b"), None]);
        let e_times = Int64Array::from(vec![
            Some(600 * minute),
            Some(480 * minute),
            Some(600 * minute),
            Some(0),
        ]);
        let s_keys = keys(&[Some(b"a"), Some(b"a"), Some(b"a"), Some(b"a"), Some(b"b")]);
        let s_times = Int64Array::from(vec![
            450 * minute,
            480 * minute,
            599 * minute,
            601 * minute,
            300 * minute,
        ]);
        let s_created = Int64Array::from(vec![None, None, None, None, None]);
        let matches = match_rows(&e_keys, &e_times, &s_keys, &s_times, &s_created, Some(120 * minute));
        assert_eq!(matches, vec![Some(2), Some(1), None, None]);
        let unlimited = match_rows(&e_keys, &e_times, &s_keys, &s_times, &s_created, None);
        assert_eq!(unlimited, vec![Some(2), Some(1), Some(4), None]);
    }

    #[test]
    fn ties_on_event_time_go_to_the_latest_created_time() {
        let e_keys = keys(&[Some(b"k")]);
        let e_times = Int64Array::from(vec![100]);
        let s_keys = keys(&[Some(b"k"), Some(b"k"), Some(b"k")]);
        let s_times = Int64Array::from(vec![50, 50, 50]);
        let s_created = Int64Array::from(vec![Some(7), None, Some(9)]);
        assert_eq!(
            match_rows(&e_keys, &e_times, &s_keys, &s_times, &s_created, None),
            vec![Some(2)]
        );
        let s_created = Int64Array::from(vec![None, Some(1), None]);
        assert_eq!(
            match_rows(&e_keys, &e_times, &s_keys, &s_times, &s_created, None),
            vec![Some(1)]
        );
    }
}
