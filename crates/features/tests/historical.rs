//! Training sets against a brute-force reading of Feast's point-in-time rules, on generated data with TTL edges,
//! ties on event time, missing created times, text and integer keys, a view without entities and entity rows
//! without a match; once in memory and once spilled across many partitions.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use loopline_features::refs::Wanted;
use loopline_features::{Definitions, FeatureError, HistoricalRequest, Silent, build_training_set};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const MINUTE: i64 = 60_000_000;

struct Random(u64);

impl Random {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn time(micros: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
}

/// One source row: key, event time, created time, value.
type Row = (String, i64, Option<i64>, f64);
/// One entity row: driver, customer, time.
type EntityRow = (Option<i32>, Option<String>, Option<i64>);
/// The driver, customer and global source rows and the entity rows.
type Generated = (Vec<Row>, Vec<Row>, Vec<Row>, Vec<EntityRow>);

fn generate_source(random: &mut Random, keys: &[String], rows: usize, salt: f64) -> Vec<Row> {
    let mut out = Vec::new();
    let mut uncreated = HashSet::new();
    let mut created_counter = 0;
    while out.len() < rows {
        let key = keys[random.next(keys.len() as u64) as usize].clone();
        let event = random.next(600) as i64 * MINUTE;
        let created = if random.next(5) == 0 {
            if !uncreated.insert((key.clone(), event)) {
                continue;
            }
            None
        } else {
            created_counter += 1;
            Some(created_counter * 1000)
        };
        out.push((key, event, created, out.len() as f64 + salt));
    }
    out
}

/// Feast's rule, read literally: the latest event at or before the entity time and no older than the TTL, ties
/// to the latest created time (none counting as the earliest).
fn expected(rows: &[Row], key: &str, at: i64, ttl: Option<i64>) -> Option<f64> {
    rows.iter()
        .filter(|(k, event, _, _)| k == key && *event <= at && ttl.is_none_or(|t| *event >= at - t))
        .max_by_key(|(_, event, created, _)| (*event, *created))
        .map(|r| r.3)
}

fn setup(dir: &Path) -> Generated {
    let mut random = Random(7);
    let drivers: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let customers: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
    let driver_rows = generate_source(&mut random, &drivers, 3000, 0.25);
    let customer_rows = generate_source(&mut random, &customers, 1500, 0.5);
    let global_rows = generate_source(&mut random, &["".to_string()], 300, 0.75);
    std::fs::create_dir_all(dir.join("drivers")).unwrap();
    // The driver source is a directory of two files.
    for (part, rows) in driver_rows.chunks(1700).enumerate() {
        write(
            &dir.join(format!("drivers/part-{part}.parquet")),
            vec![
                (
                    "driver_id",
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.0.parse::<i64>().unwrap()),
                    )) as ArrayRef,
                ),
                ("ts", time(rows.iter().map(|r| Some(r.1)).collect())),
                ("created", time(rows.iter().map(|r| r.2).collect())),
                (
                    "raw_rate",
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
                ),
            ],
        );
    }
    write(
        &dir.join("customers.parquet"),
        vec![
            (
                "customer_id",
                Arc::new(StringArray::from_iter_values(customer_rows.iter().map(|r| r.0.clone()))) as ArrayRef,
            ),
            ("ts", time(customer_rows.iter().map(|r| Some(r.1)).collect())),
            ("created", time(customer_rows.iter().map(|r| r.2).collect())),
            (
                "spend",
                Arc::new(Float64Array::from_iter_values(customer_rows.iter().map(|r| r.3))),
            ),
        ],
    );
    write(
        &dir.join("global.parquet"),
        vec![
            ("ts", time(global_rows.iter().map(|r| Some(r.1)).collect())),
            ("created", time(global_rows.iter().map(|r| r.2).collect())),
            (
                "level",
                Arc::new(Float64Array::from_iter_values(global_rows.iter().map(|r| r.3))),
            ),
        ],
    );
    let mut entity_rows = Vec::new();
    for i in 0..2500 {
        let driver = if i % 97 == 0 {
            None
        } else {
            Some(random.next(45) as i32)
        };
        let customer = if i % 89 == 0 {
            None
        } else {
            Some(format!("c{}", random.next(28)))
        };
        // Every tenth entity time sits exactly on a source event time or exactly one TTL after it.
        let at = if i % 10 == 0 {
            let r = &driver_rows[random.next(driver_rows.len() as u64) as usize];
            Some(r.1 + if i % 20 == 0 { 0 } else { 120 * MINUTE })
        } else if i % 131 == 0 {
            None
        } else {
            Some(random.next(700) as i64 * MINUTE)
        };
        entity_rows.push((driver, customer, at));
    }
    write(
        &dir.join("entities.parquet"),
        vec![
            (
                "driver_id",
                Arc::new(Int32Array::from_iter(entity_rows.iter().map(|r| r.0))) as ArrayRef,
            ),
            (
                "customer_id",
                Arc::new(StringArray::from_iter(entity_rows.iter().map(|r| r.1.clone()))),
            ),
            ("event_timestamp", time(entity_rows.iter().map(|r| r.2).collect())),
            (
                "label",
                Arc::new(Int64Array::from_iter_values(0..entity_rows.len() as i64)),
            ),
        ],
    );
    std::fs::write(
        dir.join("features.yaml"),
        r#"
project: test
entities:
  - {name: driver, join_keys: [driver_id], value_type: int64}
  - {name: customer, join_keys: [customer_id], value_type: string}
sources:
  - {name: driver_source, path: drivers, timestamp_field: ts, created_timestamp_column: created,
     field_mapping: {raw_rate: conv_rate}}
  - {name: customer_source, path: customers.parquet, timestamp_field: ts, created_timestamp_column: created}
  - {name: global_source, path: global.parquet, timestamp_field: ts, created_timestamp_column: created}
feature_views:
  - {name: driver_stats, entities: [driver], ttl: 2h, source: driver_source,
     schema: [{name: driver_id, dtype: int64}, {name: conv_rate, dtype: float64}]}
  - {name: customer_stats, entities: [customer], source: customer_source, schema: [{name: spend, dtype: float64}]}
  - {name: global_stats, ttl: 3600, source: global_source, schema: [{name: level, dtype: float64}]}
feature_services:
  - name: everything
    features: [driver_stats, customer_stats, {global_stats: [level]}]
"#,
    )
    .unwrap();
    (driver_rows, customer_rows, global_rows, entity_rows)
}

fn read_output(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn request(dir: &Path, memory_limit: usize, output: &str) -> HistoricalRequest {
    HistoricalRequest {
        definitions: Definitions::from_file(&dir.join("features.yaml")).unwrap(),
        wanted: Wanted::Service("everything".to_string()),
        full_feature_names: true,
        entities: dir.join("entities.parquet"),
        output: dir.join(output),
        memory_limit,
        spill_dir: None,
    }
}

#[test]
fn the_training_set_follows_feasts_point_in_time_rules_in_memory_and_spilled() {
    let dir = tempfile::tempdir().unwrap();
    let (drivers, customers, global, entities) = setup(dir.path());
    for (limit, name) in [(1 << 30, "memory.parquet"), (4096, "spilled.parquet")] {
        let summary = build_training_set(&request(dir.path(), limit, name), &Silent).unwrap();
        let partitions: Vec<usize> = summary.views.iter().map(|v| v.1).collect();
        if limit == 4096 {
            assert!(partitions[0] > 8 && partitions[1] > 8, "{partitions:?}");
        } else {
            assert_eq!(partitions, vec![1, 1, 1]);
        }
        assert_eq!(summary.rows, entities.len() as u64);
        assert_eq!(
            summary.source_rows,
            (drivers.len() + customers.len() + global.len()) as u64
        );
        let out = read_output(&dir.path().join(name));
        assert_eq!(
            out.schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            [
                "driver_id",
                "customer_id",
                "event_timestamp",
                "label",
                "driver_stats__conv_rate",
                "customer_stats__spend",
                "global_stats__level"
            ]
        );
        let labels = out.column(3).as_primitive::<Int64Type>();
        let column = |i: usize| out.column(i).as_primitive::<Float64Type>().clone();
        let (rate, spend, level) = (column(4), column(5), column(6));
        let value = |a: &Float64Array, i: usize| if a.is_null(i) { None } else { Some(a.value(i)) };
        let mut found = [0; 3];
        for (i, (driver, customer, at)) in entities.iter().enumerate() {
            assert_eq!(labels.value(i), i as i64, "rows keep the entity frame's order");
            let want_rate = match (driver, at) {
                (Some(d), Some(at)) => expected(&drivers, &d.to_string(), *at, Some(120 * MINUTE)),
                _ => None,
            };
            let want_spend = match (customer, at) {
                (Some(c), Some(at)) => expected(&customers, c, *at, None),
                _ => None,
            };
            let want_level = at.and_then(|at| expected(&global, "", at, Some(60 * MINUTE)));
            assert_eq!(
                value(&rate, i),
                want_rate,
                "{name}: driver row {i}: {driver:?} at {at:?}"
            );
            assert_eq!(value(&spend, i), want_spend, "{name}: customer row {i}");
            assert_eq!(value(&level, i), want_level, "{name}: global row {i}");
            found[0] += want_rate.is_some() as usize;
            found[1] += want_spend.is_some() as usize;
            found[2] += want_level.is_some() as usize;
        }
        // The data exercises both outcomes of every view.
        assert!(found.iter().all(|&f| f > 100 && f < entities.len() - 50), "{found:?}");
        assert_eq!(summary.views.iter().map(|v| v.2 as usize).collect::<Vec<_>>(), found);
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "spill and partial files are removed: {leftovers:?}"
    );
}

#[test]
fn bad_requests_are_refused_with_their_reason_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let mut bad = request(dir.path(), 1 << 30, "out.parquet");
    bad.wanted = Wanted::References(vec!["driver_stats:nope".into()]);
    assert!(
        build_training_set(&bad, &Silent)
            .unwrap_err()
            .to_string()
            .contains("has no feature `nope`")
    );
    bad.wanted = Wanted::References(vec!["no_view:x".into()]);
    assert!(
        build_training_set(&bad, &Silent)
            .unwrap_err()
            .to_string()
            .contains("no feature view `no_view`")
    );
    bad.wanted = Wanted::Service("everything".into());
    bad.full_feature_names = false;
    bad.definitions = Definitions::from_yaml(
        &std::fs::read_to_string(dir.path().join("features.yaml"))
            .unwrap()
            .replace("spend", "conv_rate"),
        dir.path(),
        "test",
    )
    .unwrap();
    assert!(matches!(
        build_training_set(&bad, &Silent),
        Err(FeatureError::NameCollision { .. })
    ));

    // An entity frame without a time column, and one whose key is text where the source's is an integer.
    write(
        &dir.path().join("no_time.parquet"),
        vec![("driver_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef)],
    );
    let mut bad = request(dir.path(), 1 << 30, "out.parquet");
    bad.entities = dir.path().join("no_time.parquet");
    assert!(
        build_training_set(&bad, &Silent)
            .unwrap_err()
            .to_string()
            .contains("no time column")
    );
    write(
        &dir.path().join("text_key.parquet"),
        vec![
            ("driver_id", Arc::new(StringArray::from(vec!["1"])) as ArrayRef),
            ("customer_id", Arc::new(StringArray::from(vec!["c1"]))),
            ("event_timestamp", time(vec![Some(0)])),
        ],
    );
    bad.entities = dir.path().join("text_key.parquet");
    let message = build_training_set(&bad, &Silent).unwrap_err().to_string();
    assert!(
        message.contains("join key `driver_id` is text in the entity frame"),
        "{message}"
    );
    assert!(!dir.path().join("out.parquet").exists());
}

#[test]
fn an_output_that_is_an_input_or_a_directory_is_refused_and_what_a_killed_run_left_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let mut bad = request(dir.path(), 1 << 30, "entities.parquet");
    let message = build_training_set(&bad, &Silent).unwrap_err().to_string();
    assert!(message.contains("is an input of this run"), "{message}");
    bad.output = dir.path().join("customers.parquet");
    assert!(
        build_training_set(&bad, &Silent)
            .unwrap_err()
            .to_string()
            .contains("is an input")
    );
    bad.output = dir.path().join("drivers");
    assert!(
        build_training_set(&bad, &Silent)
            .unwrap_err()
            .to_string()
            .contains("is a directory")
    );

    bad.output = dir.path().join("train.csv");
    assert!(
        build_training_set(&bad, &Silent)
            .unwrap_err()
            .to_string()
            .contains("written as Parquet")
    );
    bad.output = dir.path().join("no-such-dir").join("train.parquet");
    assert!(
        build_training_set(&bad, &Silent)
            .unwrap_err()
            .to_string()
            .contains("does not exist")
    );

    // `check` reads the sources: a feature column missing, a key of another type than its entity declares.
    let yaml = std::fs::read_to_string(dir.path().join("features.yaml")).unwrap();
    let checked = loopline_features::check_sources(&Definitions::from_yaml(&yaml, dir.path(), "t").unwrap());
    assert!(checked.iter().all(|(_, result)| result.is_ok()), "{checked:?}");
    let wrong = yaml
        .replace("{name: spend, dtype: float64}", "{name: spent, dtype: float64}")
        .replace("value_type: int64}", "value_type: string}");
    let checked = loopline_features::check_sources(&Definitions::from_yaml(&wrong, dir.path(), "t").unwrap());
    let problems: Vec<String> = checked
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(problems.iter().any(|p| p.contains("no column `spent`")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("value_type is String")),
        "{problems:?}"
    );

    // Scratch named after a process that no longer exists is what a killed run left.
    let stale = dir.path().join(".loopline-features-spill-999999999-abc");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("view-source-0.arrows"), b"partial").unwrap();
    let partial = dir.path().join(".loopline-training-set-999999999-xyz.partial");
    std::fs::write(&partial, b"partial").unwrap();
    build_training_set(&request(dir.path(), 4096, "out.parquet"), &Silent).unwrap();
    assert!(!stale.exists() && !partial.exists());
}

#[test]
fn definitions_that_do_not_hold_together_are_refused_naming_the_object() {
    let base = Path::new("/");
    let cases = [
        (
            "feature_views: [{name: v, entities: [ghost], source: s, schema: [{name: f, dtype: int64}]}]\nsources: [{name: s, path: x, timestamp_field: t}]",
            "no entity `ghost`",
        ),
        (
            "sources: [{name: s, path: x, timestamp_field: t}]\nfeature_views: [{name: v, source: s, schema: [{name: f, dtype: decimal}]}]",
            "unknown type \"decimal\"",
        ),
        (
            "sources: [{name: s, path: x, timestamp_field: t}]\nfeature_views: [{name: v, source: s, ttl: 2x, schema: [{name: f, dtype: int64}]}]",
            "unknown unit",
        ),
        (
            "sources: [{name: s, path: x, timestamp_field: t, colour: red}]",
            "unknown field `colour`",
        ),
        ("entities: [{name: \"bad name\"}]", "is not valid"),
        ("", "it is empty"),
        (
            "sources: [{name: s, path: x, timestamp_field: t, field_mapping: {a: f, b: f}}]",
            "maps two columns to `f`",
        ),
        (
            "sources: [{name: s, path: x, timestamp_field: t}]\nfeature_views: [{name: v, source: s, schema: [{name: t, dtype: int64}]}]",
            "time column",
        ),
    ];
    for (text, wanted) in cases {
        let message = Definitions::from_yaml(text, base, "defs.yaml").unwrap_err().to_string();
        assert!(message.contains(wanted), "{text}: {message}");
    }
}
