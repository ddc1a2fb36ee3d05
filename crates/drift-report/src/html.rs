//! The report as one self-contained HTML page: inline CSS and SVG, no scripts, no external fonts or images, and
//! only aggregated numbers (bin and label shares), so it opens at once whatever the size of the data.

use std::fmt::Write;

use crate::plot::Plot;
use crate::report::{ColumnReport, DriftReport};

const REFERENCE_COLOUR: &str = "#4a6fa5";
const CURRENT_COLOUR: &str = "#e07a28";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A number in at most four significant digits, scientific when very large or small.
pub fn format_number(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "∞".to_string()
        } else {
            "−∞".to_string()
        };
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-3..1e5).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let text = format!("{value:.4}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if text == "-0" { "0".to_string() } else { text }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
.sub{color:#5b6475;margin:0 0 18px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:12px 16px;min-width:170px}
.card b{display:block;font-size:22px;margin-top:2px}
.card small{color:#5b6475}
.verdict{border-left:6px solid}
.drift{border-left-color:#c0392b}.stable{border-left-color:#2e8b57}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8;border-radius:8px}
th,td{padding:8px 10px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:middle;font-size:14px}
th{background:#f0f2f5;font-weight:600}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;white-space:nowrap;padding:2px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.drift{background:#fbe3e0;color:#a93226}.badge.stable{background:#e0f3e8;color:#23704a}
.badge.skip{background:#eceef2;color:#5b6475}
.legend span{display:inline-block;width:12px;height:12px;border-radius:2px;margin:0 4px -1px 12px}
ul.findings li{margin:4px 0}
.muted{color:#5b6475;font-size:13px}
svg text{font-size:10px;fill:#5b6475}
";

/// Renders the report.
pub fn render(report: &DriftReport) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let verdict = if report.dataset_drift {
        "Dataset drift detected"
    } else {
        "No dataset drift"
    };
    let class = if report.dataset_drift { "drift" } else { "stable" };
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>Drift report: {}</title><style>{STYLE}</style></head>\
         <body><main><h1>Drift report</h1><p class=\"sub\">Reference <b>{}</b> ({} rows) compared with current <b>{}</b> \
         ({} rows)</p>",
        escape(&report.current.source),
        escape(&report.reference.source),
        report.reference.rows,
        escape(&report.current.source),
        report.current.rows,
    );
    let _ = write!(
        page,
        "<div class=\"cards\"><div class=\"card verdict {class}\"><small>Verdict</small><b>{verdict}</b></div>\
         <div class=\"card\"><small>Drifted columns</small><b>{} of {}</b></div>\
         <div class=\"card\"><small>Share drifted / dataset threshold</small><b>{:.1}% / {:.1}%</b></div>\
         <div class=\"card\"><small>Data-quality findings</small><b>{}</b></div></div>",
        report.drifted_columns,
        report.tested_columns,
        100.0 * report.share_of_drifted_columns,
        100.0 * report.drift_share,
        report.findings.len(),
    );
    let schema_lines = report.schema.describe();
    if !schema_lines.is_empty() || !report.findings.is_empty() {
        page.push_str("<h2>Schema and data quality</h2><ul class=\"findings\">");
        for line in schema_lines {
            let _ = write!(page, "<li>{}</li>", escape(&line));
        }
        for finding in &report.findings {
            let column = finding
                .column
                .as_deref()
                .map(|c| format!("<b>{}</b>: ", escape(c)))
                .unwrap_or_default();
            let _ = write!(page, "<li>{column}{}</li>", escape(&finding.message));
        }
        page.push_str("</ul>");
    }
    let _ = write!(
        page,
        "<h2>Columns</h2><p class=\"legend muted\">Distributions as shares of each data set:<span style=\"background:\
         {REFERENCE_COLOUR}\"></span>reference<span style=\"background:{CURRENT_COLOUR}\"></span>current</p>\
         <table><thead><tr><th>Column</th><th>Type</th><th>Verdict</th><th>Method</th><th>Value</th>\
         <th>Threshold</th><th>Missing ref / cur</th><th>Distribution</th></tr></thead><tbody>"
    );
    let mut ordered: Vec<&ColumnReport> = report.columns.iter().collect();
    ordered.sort_by_key(|c| (!c.drifted, c.method.is_none()));
    for column in ordered {
        column_row(&mut page, column);
    }
    page.push_str(
        "</tbody></table><p class=\"muted\">p-value methods drift when the value is below the threshold; distances \
         when it is at or above it. Generated by Loopline.</p></main></body></html>\n",
    );
    page
}

fn column_row(page: &mut String, column: &ColumnReport) {
    let badge = match (column.method, column.drifted) {
        (None, _) => "<span class=\"badge skip\">not tested</span>",
        (Some(_), true) => "<span class=\"badge drift\">drift</span>",
        (Some(_), false) => "<span class=\"badge stable\">no drift</span>",
    };
    let method = match (column.method_description, &column.not_tested) {
        (Some(description), _) => escape(description),
        (None, Some(reason)) => format!("<span class=\"muted\">{}</span>", escape(reason)),
        (None, None) => String::new(),
    };
    let missing = |rows: u64, missing: u64| {
        if rows == 0 {
            "–".to_string()
        } else {
            format!("{:.1}%", 100.0 * missing as f64 / rows as f64)
        }
    };
    let _ = write!(
        page,
        "<tr><td><b>{}</b></td><td>{} <span class=\"muted\">{}</span></td><td>{badge}</td><td>{method}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td><td>{}</td></tr>",
        escape(&column.name),
        column.kind.label(),
        escape(&column.data_type),
        column.score.map(format_number).unwrap_or_default(),
        column.threshold.map(format_number).unwrap_or_default(),
        missing(column.reference.rows, column.reference.missing),
        missing(column.current.rows, column.current.missing),
        column.plot.as_ref().map(chart).unwrap_or_default(),
    );
}

const WIDTH: f64 = 340.0;
const HEIGHT: f64 = 96.0;
const AXIS: f64 = 14.0;

fn chart(plot: &Plot) -> String {
    match plot {
        Plot::Histogram {
            edges,
            reference,
            current,
        } => histogram(edges, reference, current),
        Plot::Bars {
            labels,
            reference,
            current,
        } => bars(labels, reference, current),
    }
}

fn histogram(edges: &[f64], reference: &[f64], current: &[f64]) -> String {
    let bins = reference.len().max(1);
    let top = reference
        .iter()
        .chain(current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let width = WIDTH / bins as f64;
    let plot_height = HEIGHT - AXIS;
    let mut svg = format!(
        "<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\"><title>histogram</title>"
    );
    for (shares, colour) in [(reference, REFERENCE_COLOUR), (current, CURRENT_COLOUR)] {
        for (i, share) in shares.iter().enumerate() {
            let height = plot_height * share / top;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{colour}\" fill-opacity=\"0.55\"/>",
                i as f64 * width,
                plot_height - height,
                (width - 1.0).max(0.5),
            );
        }
    }
    let _ = write!(
        svg,
        "<line x1=\"0\" y1=\"{plot_height}\" x2=\"{WIDTH}\" y2=\"{plot_height}\" stroke=\"#aab\"/>\
         <text x=\"0\" y=\"{HEIGHT}\">{}</text><text x=\"{WIDTH}\" y=\"{HEIGHT}\" text-anchor=\"end\">{}</text></svg>",
        escape(&format_number(*edges.first().unwrap_or(&0.0))),
        escape(&format_number(*edges.last().unwrap_or(&0.0))),
    );
    svg
}

fn bars(labels: &[String], reference: &[f64], current: &[f64]) -> String {
    let groups = labels.len().max(1);
    let top = reference
        .iter()
        .chain(current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let group_width = WIDTH / groups as f64;
    let bar = ((group_width - 2.0) / 2.0).max(0.5);
    let plot_height = HEIGHT - AXIS;
    let mut svg = format!(
        "<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\"><title>categories</title>"
    );
    for (i, label) in labels.iter().enumerate() {
        let x = i as f64 * group_width;
        for (offset, share, colour) in [(0.0, reference[i], REFERENCE_COLOUR), (bar, current[i], CURRENT_COLOUR)] {
            let height = plot_height * share / top;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{height:.1}\" fill=\"{colour}\"><title>{}: {:.2}%</title></rect>",
                x + offset,
                plot_height - height,
                escape(label),
                100.0 * share
            );
        }
        if groups <= 8 {
            let short: String = label.chars().take((group_width / 6.0).max(3.0) as usize).collect();
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{HEIGHT}\" text-anchor=\"middle\">{}</text>",
                x + group_width / 2.0,
                escape(&short)
            );
        }
    }
    let _ = write!(
        svg,
        "<line x1=\"0\" y1=\"{plot_height}\" x2=\"{WIDTH}\" y2=\"{plot_height}\" stroke=\"#aab\"/></svg>"
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(format_number(0.123456), "0.1235");
        assert_eq!(format_number(2.0), "2");
        assert_eq!(format_number(1.5e-7), "1.500e-7");
        assert_eq!(format_number(f64::INFINITY), "∞");
    }
}
