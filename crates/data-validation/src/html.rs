//! A validation result as one self-contained HTML page (inline CSS, no scripts or external resources).

use std::fmt::Write;

use loopline_core::html::{escape, format_number};
use serde_json::Value;

use crate::result::{ExpectationResult, ValidationResult};

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:24px}h1{font-size:24px;margin:0 0 4px}
.sub{color:#5b6475;margin:0 0 18px}.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:20px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:12px 16px;min-width:170px}
.card b{display:block;font-size:22px;margin-top:2px}.card small{color:#5b6475}
.verdict{border-left:6px solid}.fail{border-left-color:#c0392b}.pass{border-left-color:#2e8b57}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
th,td{padding:8px 10px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:top;font-size:14px}
th{background:#f0f2f5}code{font-size:12px;background:#f0f2f5;padding:1px 4px;border-radius:3px}
td.args{min-width:220px;max-width:380px;overflow-wrap:anywhere}td.args div{margin:1px 0}
td.observed{min-width:200px;max-width:360px;overflow-wrap:anywhere}
.badge{display:inline-block;white-space:nowrap;padding:2px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.fail{background:#fbe3e0;color:#a93226}.badge.pass{background:#e0f3e8;color:#23704a}
.muted{color:#5b6475;font-size:13px}
";

/// Items of a list shown before "… and N more".
const LISTED: usize = 8;

fn show(value: &Value) -> String {
    match value {
        Value::Number(n) => n.as_f64().map(format_number).unwrap_or_else(|| n.to_string()),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let shown: Vec<String> = items.iter().take(LISTED).map(show).collect();
            let more = items.len().saturating_sub(LISTED);
            if more > 0 {
                format!("{} … and {more} more", shown.join(", "))
            } else {
                shown.join(", ")
            }
        }
        other => other.to_string(),
    }
}

/// The arguments other than the column, one `name: value` line each.
fn arguments(kwargs: &serde_json::Map<String, Value>) -> String {
    kwargs
        .iter()
        .filter(|(name, _)| name.as_str() != "column" && name.as_str() != "batch_id")
        .map(|(name, value)| format!("<div><code>{}</code> {}</div>", escape(name), escape(&show(value))))
        .collect()
}

/// One line on what an expectation observed.
pub fn observation(result: &ExpectationResult) -> String {
    if let Some(message) = &result.exception_info.exception_message {
        return format!("could not evaluate: {message}");
    }
    let r = &result.result;
    if let Some(observed) = r.get("observed_value") {
        return format!("observed {}", show(observed));
    }
    match (r.get("unexpected_count"), r.get("element_count")) {
        (Some(unexpected), Some(elements)) => {
            let share = r
                .get("unexpected_percent")
                .and_then(Value::as_f64)
                .map(|p| format!(" ({}%)", format_number(p)));
            format!(
                "{} of {} values unexpected{}",
                show(unexpected),
                show(elements),
                share.unwrap_or_default()
            )
        }
        _ if result.success => "met".to_string(),
        _ => "not met".to_string(),
    }
}

/// Renders a validation result.
pub fn render(result: &ValidationResult, data: &str) -> String {
    let mut page = String::with_capacity(32 * 1024);
    let (class, verdict) = if result.success {
        ("pass", "All expectations met")
    } else {
        ("fail", "Expectations failed")
    };
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>Validation: {}</title><style>{STYLE}</style></head>\
         <body><main><h1>Validation report</h1><p class=\"sub\">Suite <b>{}</b> on <b>{}</b></p><div class=\"cards\">\
         <div class=\"card verdict {class}\"><small>Verdict</small><b>{verdict}</b></div><div class=\"card\"><small>Met\
         </small><b>{} of {}</b></div></div><table><thead><tr><th>#</th><th>Expectation</th><th>Column</th><th>Arguments</th>\
         <th>Result</th><th>Observed</th><th>Sample of unexpected values</th></tr></thead><tbody>",
        escape(&result.suite_name),
        escape(&result.suite_name),
        escape(data),
        result.statistics.successful_expectations,
        result.statistics.evaluated_expectations,
    );
    for (index, item) in result.results.iter().enumerate() {
        let badge = if item.success {
            "<span class=\"badge pass\">met</span>"
        } else {
            "<span class=\"badge fail\">failed</span>"
        };
        let sample = item
            .result
            .get("partial_unexpected_list")
            .and_then(Value::as_array)
            .map(|values| values.iter().take(8).map(show).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let column = item
            .expectation_config
            .kwargs
            .get("column")
            .and_then(Value::as_str)
            .unwrap_or("");
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td><b>{}</b></td><td class=\"args\">{}</td><td>{badge}</td>\
             <td class=\"observed\">{}</td><td class=\"muted\">{}</td></tr>",
            index + 1,
            escape(&item.expectation_config.kind),
            escape(column),
            arguments(&item.expectation_config.kwargs),
            escape(&observation(item)),
            escape(&sample),
        );
    }
    page.push_str("</tbody></table><p class=\"muted\">Generated by Loopline.</p></main></body></html>\n");
    page
}
