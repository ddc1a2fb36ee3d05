use super::*;

/// Deterministic pseudo-random numbers in [0, 1).
fn uniform(seed: u64, count: usize) -> Vec<f64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = mix(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

fn numeric_column(name: &str, mut values: Vec<f64>, nulls: u64) -> (String, DataType, ColumnValues) {
    values.sort_by(f64::total_cmp);
    let numbers = NumericValues {
        values,
        nulls,
        nan: 0,
        positive_infinity: 0,
        negative_infinity: 0,
    };
    (name.to_string(), DataType::Float64, ColumnValues::Numeric(numbers))
}

fn current(columns: Vec<(String, DataType, ColumnValues)>) -> CurrentData {
    CurrentData {
        source: "test".into(),
        rows: 0,
        schema: columns.iter().map(|(n, t, _)| (n.clone(), t.clone())).collect(),
        columns,
        duplicate_rows: None,
    }
}

/// The digest of a sketch's first column.
fn first_digest(sketch: &mut WindowSketch) -> &mut Digest {
    sketch.columns[0].numeric.as_mut().unwrap().digest.as_mut().unwrap()
}

fn rank_of(sorted: &[f64], value: f64) -> f64 {
    sorted.partition_point(|v| *v < value) as f64 / sorted.len() as f64
}

#[test]
fn a_day_merged_from_its_hours_has_the_day_s_quantiles_and_counts() {
    // Skewed values (squares of uniform numbers), split over 24 hours in no order.
    let day: Vec<f64> = uniform(7, 240_000).iter().map(|u| u * u * 1_000.0).collect();
    let mut merged: Option<WindowSketch> = None;
    for hour in 0..24 {
        let values: Vec<f64> = day.iter().skip(hour).step_by(24).copied().collect();
        let sketch = WindowSketch::of_current(&current(vec![numeric_column("x", values, 5)]), 1.0);
        let mut changed = Vec::new();
        merged = Some(match merged {
            None => sketch,
            Some(so_far) => so_far.merge(&sketch, &mut changed),
        });
        assert!(changed.is_empty());
    }
    let merged = merged.unwrap();
    let column = &merged.columns[0];
    assert_eq!((column.cells, column.nulls), (240_000.0 + 120.0, 120.0));
    let numeric = column.numeric.as_ref().unwrap();
    let digest = numeric.digest.as_ref().unwrap();
    assert!(
        digest.centroids.len() <= 2 * COMPRESSION as usize,
        "{}",
        digest.centroids.len()
    );
    let mut sorted = day.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!((digest.min, digest.max), (sorted[0], sorted[sorted.len() - 1]));
    for q in [0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999] {
        let rank = rank_of(&sorted, digest.quantile(q));
        assert!((rank - q).abs() < 0.005, "q {q}: rank {rank}");
    }
    let mean = numeric.sum.unwrap() / numeric.finite;
    let exact = day.iter().sum::<f64>() / day.len() as f64;
    assert!((mean - exact).abs() < 1e-9 * exact);
    let distinct = column.distinct.estimate();
    assert!((distinct - 240_000.0).abs() < 0.1 * 240_000.0, "{distinct}");
}

#[test]
fn few_distinct_values_stay_exact_and_categories_add_up() {
    let hours: Vec<WindowSketch> = (0..3)
        .map(|hour| {
            let values: Vec<f64> = (0..100).map(|i| f64::from((i + hour) % 3)).collect();
            let labels = CategoricalValues {
                counts: vec![("a".into(), 10 + hour as u64), (format!("only-{hour}"), 1)],
                nulls: 2,
            };
            let columns = vec![
                numeric_column("n", values, 0),
                ("c".into(), DataType::Utf8, ColumnValues::Categorical(labels)),
            ];
            // The second hour was sampled at rate 1/2: its rows stand for two each.
            WindowSketch::of_current(&current(columns), if hour == 1 { 2.0 } else { 1.0 })
        })
        .collect();
    let mut changed = Vec::new();
    let day = hours[0].merge(&hours[1], &mut changed).merge(&hours[2], &mut changed);
    let exact = day.columns[0].numeric.as_ref().unwrap().values.clone().unwrap();
    let total: f64 = exact.iter().map(|v| v.1).sum();
    assert_eq!(exact.iter().map(|v| v.0).collect::<Vec<_>>(), [0.0, 1.0, 2.0]);
    assert_eq!(total, 400.0);
    let categories = &day.columns[1].categorical.as_ref().unwrap().counts;
    assert_eq!(categories[0], ("a".to_string(), 10.0 + 22.0 + 12.0));
    assert_eq!(day.columns[1].nulls, 2.0 + 4.0 + 2.0);
    // The stand-in data keeps exact values exact and shares in proportion.
    let data = current_data(&day, 400, "day");
    match &data.columns[0].2 {
        ColumnValues::Numeric(numbers) => {
            assert_eq!(numbers.values.len(), 400);
            assert!(numbers.values.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
        }
        other => panic!("{other:?}"),
    }
    match &data.columns[1].2 {
        ColumnValues::Categorical(labels) => assert_eq!(labels.nulls, 8),
        other => panic!("{other:?}"),
    }
}

/// Column `x` as numbers, and as text.
fn numbers_and_text() -> (WindowSketch, WindowSketch) {
    let numbers = WindowSketch::of_current(&current(vec![numeric_column("x", vec![1.0, 2.0], 0)]), 1.0);
    let labels = CategoricalValues {
        counts: vec![("a".into(), 1)],
        nulls: 0,
    };
    let text = WindowSketch::of_current(
        &current(vec![("x".into(), DataType::Utf8, ColumnValues::Categorical(labels))]),
        1.0,
    );
    (numbers, text)
}

#[test]
fn a_column_whose_type_changed_is_named_not_merged() {
    let (numbers, text) = numbers_and_text();
    let mut changed = Vec::new();
    let merged = numbers.merge(&text, &mut changed);
    assert_eq!(changed.len(), 1);
    assert!(changed[0].contains("'x'"), "{changed:?}");
    assert!(merged.columns.is_empty());
}

#[test]
fn stored_sketches_round_trip_and_lies_are_refused() {
    let sketch = WindowSketch::of_current(&current(vec![numeric_column("x", uniform(1, 1_000), 3)]), 4.0);
    let text = serde_json::to_string(&sketch).unwrap();
    let back: WindowSketch = serde_json::from_str(&text).unwrap();
    // JSON numbers come back to the last bit or one unit off: the summary is the same.
    assert_eq!(
        (back.weight, back.columns[0].cells, back.columns[0].nulls),
        (4.0, 4_012.0, 12.0)
    );
    assert_eq!(back.columns[0].distinct, sketch.columns[0].distinct);
    let (a, b) = (&back.columns[0].numeric, &sketch.columns[0].numeric);
    let (a, b) = (
        a.as_ref().unwrap().digest.as_ref().unwrap(),
        b.as_ref().unwrap().digest.as_ref().unwrap(),
    );
    assert_eq!(a.centroids.len(), b.centroids.len());
    assert!((a.quantile(0.5) - b.quantile(0.5)).abs() < 1e-12);
    assert!(back.check().is_ok());
    let mut lying = back.clone();
    lying.columns[0].cells = f64::INFINITY;
    assert!(lying.check().is_err());
    let mut lying = back;
    first_digest(&mut lying).centroids = vec![(1.0, 1.0); MAX_CENTROIDS + 1];
    assert!(lying.check().unwrap_err().contains("centroids"));
    assert!(serde_json::from_str::<Distinct>("\"00ff\"").is_err());
}

proptest::proptest! {
    #[test]
    fn any_values_give_ordered_quantiles_within_their_range(
        parts in proptest::collection::vec(proptest::collection::vec(-1e12f64..1e12, 1..200), 1..6),
    ) {
        let mut merged: Option<Digest> = None;
        for mut part in parts {
            part.sort_by(f64::total_cmp);
            let digest = Digest::of_sorted(&part, 1.0).unwrap();
            merged = Some(match merged { None => digest, Some(m) => m.merge(&digest) });
        }
        let digest = merged.unwrap();
        let values = digest.representatives(50);
        proptest::prop_assert!(values.windows(2).all(|w| w[0] <= w[1] + 1e-6 * w[1].abs().max(1.0)));
        proptest::prop_assert!(values.iter().all(|v| *v >= digest.min - 1e-3 && *v <= digest.max + 1e-3));
    }

    #[test]
    fn arbitrary_stored_sketches_are_refused_or_checked_never_panicking(text in ".{0,400}") {
        if let Ok(sketch) = serde_json::from_str::<WindowSketch>(&text) {
            let _ = sketch.check();
        }
    }
}

#[test]
fn a_column_that_changes_type_mid_span_stays_out_of_the_rest_of_it() {
    let (number, text) = numbers_and_text();
    let numbers = || number.clone();
    let mut notes = Vec::new();
    let mut merged = numbers();
    for hour in 1..6 {
        let next = if hour == 2 { text.clone() } else { numbers() };
        merged = merged.merge(&next, &mut notes);
    }
    assert!(merged.columns.is_empty(), "{:?}", merged.columns);
    assert_eq!(notes.len(), 1, "{notes:?}");
    // It survives being stored.
    let stored: WindowSketch = serde_json::from_str(&serde_json::to_string(&merged).unwrap()).unwrap();
    assert!(stored.merge(&numbers(), &mut notes).columns.is_empty());
}

#[test]
fn sketches_whose_numbers_disagree_are_refused() {
    let good = WindowSketch::of_current(
        &current(vec![
            numeric_column("x", uniform(3, 500), 7),
            (
                "c".into(),
                DataType::Utf8,
                ColumnValues::Categorical(CategoricalValues {
                    counts: vec![("a".into(), 5), ("b".into(), 3)],
                    nulls: 2,
                }),
            ),
        ]),
        2.0,
    );
    assert_eq!(good.check(), Ok(()));
    type Lie = Box<dyn Fn(&mut WindowSketch)>;
    let lies: Vec<(&str, Lie)> = vec![
        (
            "huge centroid weights",
            Box::new(|s| {
                for c in &mut first_digest(s).centroids {
                    c.1 = 1e308;
                }
            }),
        ),
        (
            "means past the extremes",
            Box::new(|s| {
                first_digest(s).centroids[0].0 = -1e300;
            }),
        ),
        (
            "a sum past the values",
            Box::new(|s| s.columns[0].numeric.as_mut().unwrap().sum = Some(1e308)),
        ),
        (
            "negative squares",
            Box::new(|s| s.columns[0].numeric.as_mut().unwrap().sum_of_squares = Some(-1.0)),
        ),
        ("more nulls than cells", Box::new(|s| s.columns[0].nulls = 1e9)),
        ("cells that do not add up", Box::new(|s| s.columns[0].cells = 1e12)),
        (
            "negative categories",
            Box::new(|s| s.columns[1].categorical.as_mut().unwrap().counts[0].1 = -4.0),
        ),
        (
            "a negative pool",
            Box::new(|s| s.columns[1].categorical.as_mut().unwrap().other = -1e9),
        ),
        (
            "a column twice",
            Box::new(|s| {
                let again = s.columns[0].clone();
                s.columns.push(again);
            }),
        ),
        (
            "no digest for finite values",
            Box::new(|s| s.columns[0].numeric.as_mut().unwrap().digest = None),
        ),
        ("a weight below one row", Box::new(|s| s.weight = 0.5)),
        (
            "a spread below zero",
            Box::new(|s| s.columns[0].numeric.as_mut().unwrap().sum_of_squares = Some(0.0)),
        ),
    ];
    for (lie, change) in lies {
        let mut sketch = good.clone();
        change(&mut sketch);
        assert!(sketch.check().is_err(), "{lie} was accepted");
    }
}

#[test]
fn values_near_the_largest_float_keep_a_readable_sketch() {
    let huge = vec![1e308; 10];
    let mixed: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { -1e200 } else { 1e200 }).collect();
    let sketch = WindowSketch::of_current(
        &current(vec![numeric_column("h", huge, 0), numeric_column("m", mixed, 0)]),
        1.0,
    );
    let text = serde_json::to_string(&sketch).unwrap();
    let back: WindowSketch = serde_json::from_str(&text).unwrap();
    assert_eq!(back.check(), Ok(()));
    let h = back.columns[0].numeric.as_ref().unwrap();
    assert_eq!((h.sum, h.digest.as_ref().unwrap().quantile(0.5)), (None, 1e308));
    let m = back.columns[1].numeric.as_ref().unwrap();
    assert_eq!(m.sum_of_squares, None);
    let median = m.digest.as_ref().unwrap().quantile(0.5);
    assert!(median.is_finite() && median.abs() <= 1e200, "{median}");
    let mut notes = Vec::new();
    assert_eq!(back.merge(&back, &mut notes).check(), Ok(()));
}
