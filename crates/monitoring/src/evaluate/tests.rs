use super::*;

#[test]
fn quantiles_interpolate_as_numpy() {
    let sorted = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(quantile(&sorted, 0.5), 2.5);
    assert!((quantile(&sorted, 0.95) - 3.85).abs() < 1e-12);
    assert_eq!(quantile(&[7.0], 0.99), 7.0);
}

#[test]
fn positive_rows_agree_with_the_class_text_of_every_cell() {
    use arrow_array::{BooleanArray, Float64Array, Int32Array, Int64Array, StringArray};
    use std::sync::Arc;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![Some(1), Some(0), None, Some(-3), Some(1 << 60)])),
        Arc::new(Int32Array::from(vec![Some(1), Some(2), None])),
        Arc::new(Float64Array::from(vec![
            Some(1.0),
            Some(0.5),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(-0.0),
            None,
        ])),
        Arc::new(StringArray::from(vec![Some("1"), Some("yes"), None, Some("1.0")])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
    ];
    for positive in ["1", "0", "1.0", "0.5", "yes", "true", "false", "-3", "NaN", "inf", ""] {
        for column in &columns {
            let is_positive = positives(column, positive).unwrap();
            for row in 0..column.len() {
                let expected = class_of(&cell(column, row)).map(|class| class == positive);
                assert_eq!(
                    is_positive(row),
                    expected,
                    "{positive:?} in {:?} row {row}",
                    column.data_type()
                );
            }
        }
    }
}

#[test]
fn classes_ignore_number_spelling() {
    assert_eq!(class_of(&json!(1)), class_of(&json!(1.0)));
    assert_eq!(class_of(&json!("yes")).as_deref(), Some("yes"));
    assert_eq!(class_of(&json!(0.5)).as_deref(), Some("0.5"));
    assert_eq!(class_of(&json!(null)), None);
}

#[test]
fn list_labels_give_one_per_row() {
    let posted = PostedLabel {
        label: "[1, 0]".into(),
        timestamp_ms: 0,
    };
    assert_eq!(row_label(&posted, 1), Some(json!(0)));
    assert_eq!(row_label(&posted, 2), None, "rows past the list have no label");
    let single = PostedLabel {
        label: "\"cat\"".into(),
        timestamp_ms: 0,
    };
    assert_eq!(row_label(&single, 0), Some(json!("cat")));
}

mod dead_columns {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use std::sync::Arc;

    fn normal(seed: usize, count: usize, shift: f64) -> Vec<f64> {
        // A deterministic spread of values (no RNG needed): a sawtooth over [-1, 1).
        (0..count)
            .map(|i| ((i * 7919 + seed) % 1000) as f64 / 500.0 - 1.0 + shift)
            .collect()
    }

    #[test]
    fn a_column_with_no_values_is_named_and_the_others_are_still_compared() {
        let rows = 2_000;
        let reference_columns: Vec<(Field, ColumnValues)> = ["a", "b"]
            .iter()
            .map(|name| {
                let field = Field::new(*name, DataType::Float64, true);
                let mut collector = Collector::new(std::slice::from_ref(&field));
                let batch = RecordBatch::try_new(
                    Arc::new(Schema::new(vec![field.clone()])),
                    vec![Arc::new(Float64Array::from(normal(1, rows, 0.0)))],
                )
                .unwrap();
                collector.push(&batch).unwrap();
                let (_, values) = collector.finish().remove(0);
                (field, values)
            })
            .collect();
        let reference = DatasetProfile::of("train", rows as u64, &reference_columns);
        let live = RecordBatch::try_from_iter([
            (
                "request_id",
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("r{i}")))) as ArrayRef,
            ),
            ("row", Arc::new(Int64Array::from(vec![0i64; rows]))),
            ("input.a", Arc::new(Float64Array::from(normal(3, rows, 3.0)))),
            ("input.b", Arc::new(Float64Array::from(vec![None::<f64>; rows]))),
        ])
        .unwrap();
        let spec = MonitorSpec::parse(br#"{"model": "x", "window": {"predictions": 2000}}"#).unwrap();
        let window = WindowRows::of(vec![live], None);
        let labels = Default::default();
        let outcome = evaluate(&WindowInput {
            spec: &spec,
            rows: &window,
            labels: &labels,
            reference: Some(&reference),
            estimation: None,
            failures: &[],
        });
        assert_eq!(outcome.status, "ok", "{}", outcome.details);
        assert_eq!(
            outcome.figures.get("drift.detected.a"),
            Some(&1.0),
            "{:?}",
            outcome.figures
        );
        assert_eq!(outcome.figures.get("quality.missing_share.b"), Some(&1.0));
        assert!(
            outcome.details["notes"].to_string().contains("'b' has no values"),
            "{}",
            outcome.details
        );
    }
}
