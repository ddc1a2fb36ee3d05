//! Progress bars for reading files (drawn on standard error, only at a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over the rows of a file when its row count is known, a spinner counting rows otherwise.
pub fn rows_bar(label: &str, rows: Option<u64>) -> ProgressBar {
    counting_bar(label, rows, "rows")
}

/// A bar counting `unit`s (rows, chunks) when their total is known, a spinner counting them otherwise.
pub fn counting_bar(label: &str, total: Option<u64>, unit: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(&format!(
                "{{prefix:>10}} [{{bar:32}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}})"
            ))
            .expect("a valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(&format!(
                "{{prefix:>10}} {{spinner}} {{human_pos}} {unit} ({{per_sec}})"
            ))
            .expect("a valid template"),
        ),
    };
    bar.with_prefix(label.to_string())
}
