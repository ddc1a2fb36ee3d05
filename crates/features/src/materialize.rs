//! Materialisation: the latest row of each entity in a time window of a view's source, ready for the online
//! store. Feast's rules: event times from `start` to `end`, both inclusive; the latest event time wins, then
//! the latest created time. Source files are streamed in record batches; memory holds one row per entity.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array};

use crate::definitions::{Definitions, FeatureView};
use crate::error::FeatureError;
use crate::historical::Progress;
use crate::historical::inputs::ViewSource;
use crate::online::{FeatureValue, Keyed, OnlineRow};
use crate::refs::ViewSelection;

/// What a materialisation read and kept.
pub struct Materialized {
    /// Source rows read.
    pub rows_read: u64,
    /// The latest row of each entity in the window.
    pub rows: Keyed,
}

/// The latest row of each entity of `view` with an event time in `start..=end` (no lower bound when `None`).
pub fn latest_in_window(
    definitions: &Definitions,
    view: &FeatureView,
    start: Option<i64>,
    end: i64,
    progress: &dyn Progress,
) -> Result<Materialized, FeatureError> {
    let selection = ViewSelection {
        view: view.clone(),
        features: view.features.iter().map(|f| (f.name.clone(), f.name.clone())).collect(),
    };
    let source = definitions.sources.get(&view.source).expect("definitions were checked");
    let reader = ViewSource::open(&selection, source, None)?;
    let outputs: Vec<String> = view.features.iter().map(|f| f.name.clone()).collect();
    let schema = reader.prepared_schema(&outputs);
    let projection = reader.projection();
    progress.stage(&format!("{}: reading source `{}`", view.name, source.name), reader.rows);
    let mut latest: HashMap<Vec<u8>, OnlineRow> = HashMap::new();
    let mut rows_read = 0u64;
    for table in &reader.files {
        for batch in table.batches(Some(&projection))? {
            let batch = batch?;
            rows_read += batch.num_rows() as u64;
            progress.advance(batch.num_rows() as u64);
            let prepared = reader.prepare(&batch, &schema, table.path())?;
            let keys = prepared.column(0).as_binary::<i32>();
            let times = prepared.column(1).as_primitive::<Int64Type>();
            let created: &Int64Array = prepared.column(2).as_primitive::<Int64Type>();
            let features: Vec<&ArrayRef> = prepared.columns()[3..].iter().collect();
            for row in 0..prepared.num_rows() {
                let time = times.value(row);
                if time > end || start.is_some_and(|s| time < s) {
                    continue;
                }
                let order = (time, (!created.is_null(row)).then(|| created.value(row)));
                let key = keys.value(row);
                if latest.get(key).is_some_and(|kept| kept.order() > order) {
                    continue;
                }
                let values = features
                    .iter()
                    .map(|column| FeatureValue::from_array(column, row))
                    .collect();
                latest.insert(
                    key.to_vec(),
                    OnlineRow {
                        event_time: order.0,
                        created_time: order.1,
                        values,
                    },
                );
            }
        }
    }
    Ok(Materialized {
        rows_read,
        rows: latest.into_iter().collect(),
    })
}
