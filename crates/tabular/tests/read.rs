//! Reading each format, projection, CSV inference and the errors for bad files.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use loopline_tabular::collect::collect_columns;
use loopline_tabular::{ColumnValues, FileFormat, TableSource, TabularError};

fn sample_batch() -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4]))),
        (
            "score",
            Arc::new(Float64Array::from(vec![Some(0.5), None, Some(f64::NAN), Some(2.5)])),
        ),
        (
            "city",
            Arc::new(StringArray::from(vec![Some("oslo"), Some("paris"), None, Some("oslo")])),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

fn check_sample(source: &TableSource) {
    let columns = collect_columns(source, Some(&["score".to_string(), "city".to_string()]), |_| {}).unwrap();
    assert_eq!(columns.len(), 2);
    let ColumnValues::Numeric(score) = &columns[0].1 else {
        panic!("score is numeric: {:?}", columns[0].1)
    };
    assert_eq!(score.values, vec![0.5, 2.5]);
    assert_eq!((score.nulls, score.nan), (1, 1));
    let ColumnValues::Categorical(city) = &columns[1].1 else {
        panic!("city is categorical")
    };
    assert_eq!(city.counts, vec![("oslo".to_string(), 2), ("paris".to_string(), 1)]);
    assert_eq!(city.nulls, 1);
}

#[test]
fn reads_parquet_arrow_ipc_and_csv_alike() {
    let directory = tempfile::tempdir().unwrap();
    let batch = sample_batch();

    let parquet_path = directory.path().join("data.parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet_path).unwrap(), batch.schema(), None)
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let parquet = TableSource::open(&parquet_path).unwrap();
    assert_eq!((parquet.format(), parquet.rows()), (FileFormat::Parquet, Some(4)));
    check_sample(&parquet);

    let arrow_path = directory.path().join("data.feather");
    let mut writer =
        arrow_ipc::writer::FileWriter::try_new(std::fs::File::create(&arrow_path).unwrap(), &batch.schema()).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    check_sample(&TableSource::open(&arrow_path).unwrap());

    // Without an extension the first bytes tell the format.
    let unnamed = directory.path().join("data");
    std::fs::copy(&parquet_path, &unnamed).unwrap();
    assert_eq!(TableSource::open(&unnamed).unwrap().format(), FileFormat::Parquet);

    let csv_path = directory.path().join("data.csv");
    std::fs::write(&csv_path, "id,score,city\n1,0.5,oslo\n2,,paris\n3,NaN,NA\n4,2.5,oslo\n").unwrap();
    let csv = TableSource::open(&csv_path).unwrap();
    let types: Vec<DataType> = csv.schema().fields().iter().map(|f| f.data_type().clone()).collect();
    assert_eq!(types, vec![DataType::Int64, DataType::Float64, DataType::Utf8]);
    assert_eq!(csv.rows(), Some(4));
    check_sample(&csv);
}

#[test]
fn csv_types_come_from_every_row() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("late.csv");
    let mut text = String::from("x,flag\n");
    for i in 0..5000 {
        text.push_str(&format!("{i},true\n"));
    }
    text.push_str("1.5,FALSE\n");
    std::fs::write(&path, text).unwrap();
    let source = TableSource::open(&path).unwrap();
    assert_eq!(source.schema().field(0).data_type(), &DataType::Float64);
    assert_eq!(source.schema().field(1).data_type(), &DataType::Boolean);
    let columns = collect_columns(&source, None, |_| {}).unwrap();
    let ColumnValues::Numeric(x) = &columns[0].1 else {
        panic!()
    };
    assert_eq!(x.values.len(), 5001);
}

#[test]
fn bad_files_give_errors_that_name_the_problem() {
    let directory = tempfile::tempdir().unwrap();
    let mixed = directory.path().join("mixed.csv");
    std::fs::write(&mixed, "age,name\n31,ann\n42,bob\nforty,cy\n").unwrap();
    let error = TableSource::open(&mixed).unwrap_err();
    assert!(matches!(error, TabularError::MixedTypes { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("'age'") && message.contains("\"forty\" on line 4"),
        "{message}"
    );

    let ragged = directory.path().join("ragged.csv");
    std::fs::write(&ragged, "a,b\n1,2\n3\n").unwrap();
    let message = TableSource::open(&ragged).unwrap_err().to_string();
    assert!(message.contains("line: 3") && message.contains("1 fields"), "{message}");

    let garbage = directory.path().join("garbage.parquet");
    std::fs::write(&garbage, b"this is not parquet at all").unwrap();
    let message = TableSource::open(&garbage).unwrap_err().to_string();
    assert!(
        message.contains("garbage.parquet is not a readable Parquet file"),
        "{message}"
    );

    let unknown = directory.path().join("notes");
    std::fs::write(&unknown, b"hello").unwrap();
    assert!(matches!(
        TableSource::open(&unknown),
        Err(TabularError::UnknownFormat { .. })
    ));

    let missing = directory.path().join("absent.csv");
    assert!(
        TableSource::open(&missing)
            .unwrap_err()
            .to_string()
            .contains("absent.csv")
    );

    let empty = directory.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    assert!(
        TableSource::open(&empty)
            .unwrap_err()
            .to_string()
            .contains("no header row")
    );

    let csv = directory.path().join("ok.csv");
    std::fs::write(&csv, "a,b\n1,2\n").unwrap();
    let source = TableSource::open(&csv).unwrap();
    let error = source
        .batches(Some(&["a".to_string(), "zz".to_string()]))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("no column [\"zz\"]") && error.contains("[\"a\", \"b\"]"),
        "{error}"
    );
}

/// The sample batch written as Parquet, a few hundred bytes.
fn sample_parquet() -> Vec<u8> {
    let batch = sample_batch();
    let mut bytes = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    /// Whatever bytes of a Parquet file are damaged (its footer most of all, which says where everything else
    /// lies), opening and reading it ends with batches or an error, never a panic.
    #[test]
    fn damaged_parquet_files_are_errors_never_panics(
        flips in proptest::collection::vec((0usize..600, proptest::prelude::any::<u8>()), 1..8),
    ) {
        let mut bytes = sample_parquet();
        for (at, value) in flips {
            let at = bytes.len() - 1 - at % bytes.len();
            bytes[at] = value;
        }
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("damaged.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let read = TableSource::open(&path).and_then(|source| source.batches(None)?.try_for_each(|batch| batch.map(drop)));
        if let Err(error) = read {
            // The error names the file, whatever the damage.
            proptest::prop_assert!(error.to_string().contains("damaged.parquet"), "{}", error);
        }
    }
}
