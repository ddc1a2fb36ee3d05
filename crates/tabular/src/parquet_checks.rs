//! Defences around the parquet crate for files from outside. It trusts the offsets a footer declares (a
//! negative one is a panic inside it), so they are checked before any chunk is read; and it panics on some
//! damaged pages (a dictionary-encoded page without its dictionary), so decoding runs under [`without_panics`].

use std::ops::Range;

use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};

/// The bytes a column chunk declares it occupies in a file of `file_size` bytes, or what is wrong with them:
/// a negative offset or length, or a chunk reaching past the end of the file.
pub fn chunk_range(column: &ColumnChunkMetaData, file_size: u64) -> Result<Range<u64>, String> {
    let start = column
        .dictionary_page_offset()
        .unwrap_or_else(|| column.data_page_offset());
    let length = column.compressed_size();
    let (Ok(start), Ok(length)) = (u64::try_from(start), u64::try_from(length)) else {
        return Err(format!(
            "declares column {} at bytes {start}+{length}, a negative position",
            column.column_path()
        ));
    };
    start
        .checked_add(length)
        .filter(|end| *end <= file_size)
        .map(|end| start..end)
        .ok_or_else(|| {
            format!(
                "declares column {} at bytes {start}+{length}, past the file's end ({file_size} bytes)",
                column.column_path()
            )
        })
}

/// Checks every column chunk of every row group of a file of `file_size` bytes (see [`chunk_range`]).
pub fn check_chunks(metadata: &ParquetMetaData, file_size: u64) -> Result<(), String> {
    for group in metadata.row_groups() {
        for column in group.columns() {
            chunk_range(column, file_size)?;
        }
    }
    Ok(())
}

/// Runs Parquet decoding, turning a panic inside the parquet crate into an error that says so. The panic
/// leaves the reader in an unknown state: callers stop reading the file.
pub fn without_panics<T>(decode: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        format!("the decoder stopped on damaged data ({message})")
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parquet::basic::Type as PhysicalType;
    use parquet::schema::types::{ColumnDescriptor, ColumnPath, Type};

    use super::*;

    fn column(dictionary: Option<i64>, data: i64, size: i64) -> ColumnChunkMetaData {
        let leaf = Arc::new(Type::primitive_type_builder("x", PhysicalType::INT64).build().unwrap());
        let descriptor = Arc::new(ColumnDescriptor::new(leaf, 0, 0, ColumnPath::from("x")));
        ColumnChunkMetaData::builder(descriptor)
            .set_dictionary_page_offset(dictionary)
            .set_data_page_offset(data)
            .set_total_compressed_size(size)
            .build()
            .unwrap()
    }

    #[test]
    fn panics_become_errors() {
        assert_eq!(without_panics(|| 7), Ok(7));
        let error = without_panics(|| -> u8 { panic!("dictionary missing") }).unwrap_err();
        assert!(error.contains("dictionary missing"), "{error}");
    }

    #[test]
    fn lying_offsets_are_errors() {
        assert_eq!(chunk_range(&column(None, 4, 10), 100), Ok(4..14));
        assert_eq!(chunk_range(&column(Some(4), 50, 10), 100), Ok(4..14));
        assert!(
            chunk_range(&column(None, -4, 10), 100)
                .unwrap_err()
                .contains("negative")
        );
        assert!(
            chunk_range(&column(Some(-1), 4, 10), 100)
                .unwrap_err()
                .contains("negative")
        );
        assert!(
            chunk_range(&column(None, 4, -10), 100)
                .unwrap_err()
                .contains("negative")
        );
        assert!(
            chunk_range(&column(None, 95, 10), 100)
                .unwrap_err()
                .contains("past the file's end")
        );
        assert!(
            chunk_range(&column(None, i64::MAX, i64::MAX), u64::MAX - 2)
                .unwrap_err()
                .contains("past")
        );
    }
}
