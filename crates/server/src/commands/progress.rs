//! Progress bars for reading files (drawn on standard error, only at a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over the rows of a file when its row count is known, a spinner counting rows otherwise.
pub fn rows_bar(label: &str, rows: Option<u64>) -> ProgressBar {
    let bar = match rows {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:32}] {human_pos}/{human_len} rows ({per_sec}, {eta})")
                .expect("a valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{prefix:>10} {spinner} {human_pos} rows ({per_sec})")
                .expect("a valid template"),
        ),
    };
    bar.with_prefix(label.to_string())
}
