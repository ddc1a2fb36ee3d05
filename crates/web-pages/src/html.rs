//! The page frame and the small pieces every page uses: escaping, times, numbers, state badges, tables.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write;

use crate::api::ApiError;

/// The sections of the header, with the path each opens.
pub const SECTIONS: &[(&str, &str)] = &[
    ("Overview", "/loopline/"),
    ("Models", "/loopline/models"),
    ("Deployments", "/loopline/deployments"),
    ("Monitors", "/loopline/monitors"),
    ("Data", "/loopline/data"),
    ("Pipelines", "/loopline/pipelines"),
    ("Predictions", "/loopline/predictions"),
];

/// What the pages allow a browser to load: only this server's own style sheet and script, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A page to send.
pub struct Page {
    /// The title (also the first heading).
    pub title: String,
    /// The header section it belongs to.
    pub section: &'static str,
    /// The main content, HTML.
    pub body: String,
    /// Seconds between live refreshes of the `#live` region, when the page shows something in motion.
    pub live_seconds: Option<u32>,
    /// The status to answer.
    pub status: StatusCode,
}

impl Page {
    /// A page answered 200.
    pub fn new(title: impl Into<String>, section: &'static str, body: String) -> Page {
        Page {
            title: title.into(),
            section,
            body,
            live_seconds: None,
            status: StatusCode::OK,
        }
    }

    /// Refreshes the `#live` region every `seconds`.
    pub fn live(mut self, seconds: u32) -> Page {
        self.live_seconds = Some(seconds);
        self
    }

    /// The page for an API call that failed, with the API's status and words.
    pub fn failed(section: &'static str, what: &str, error: &ApiError) -> Page {
        let hint = if error.is_missing() {
            "It may have been deleted, or the link is mistyped."
        } else if error.status.is_client_error() {
            "The server refused the request; the message says why."
        } else {
            "The server could not answer; its log has the details."
        };
        let body = format!(
            "<p class=\"error\" role=\"alert\"><strong>{}</strong>: {}</p><p>{}</p>",
            esc(&error.code),
            esc(&error.message),
            hint
        );
        Page {
            title: what.to_string(),
            section,
            body,
            live_seconds: None,
            status: error.status,
        }
    }
}

/// The largest page body sent; a larger one (stored data no page can show whole) is replaced by a notice.
pub const MAX_PAGE_BYTES: usize = 8 << 20;

impl IntoResponse for Page {
    fn into_response(mut self) -> Response {
        if self.body.len() > MAX_PAGE_BYTES {
            self.body = format!(
                "<p class=\"error\" role=\"alert\">This page would be {} MiB, more than the {} MiB a page may be: \
                 what it shows is too large to read in a browser. The same data is in the JSON API.</p>",
                self.body.len() >> 20,
                MAX_PAGE_BYTES >> 20
            );
            self.live_seconds = None;
        }
        let mut nav = String::new();
        for (name, path) in SECTIONS {
            let current = if *name == self.section {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(nav, "<li><a href=\"{path}\"{current}>{name}</a></li>");
        }
        let live = self
            .live_seconds
            .map(|s| format!(" data-live-seconds=\"{s}\""))
            .unwrap_or_default();
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · Loopline</title>\
             <link rel=\"stylesheet\" href=\"/loopline/assets/loopline.css\">\
             <script src=\"/loopline/assets/live.js\" defer></script></head>\
             <body><a class=\"skip\" href=\"#main\">Skip to content</a>\
             <header><nav aria-label=\"Loopline\"><a class=\"brand\" href=\"/loopline/\">Loopline</a><ul>{nav}\
             <li><a href=\"/\">MLflow UI</a></li></ul></nav></header>\
             <main id=\"main\"><h1>{title}</h1><div id=\"live\"{live}>{body}</div></main></body></html>\n",
            title = esc(&self.title),
            body = self.body,
        );
        let mut response = (self.status, axum::response::Html(html)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        response
    }
}

/// Text made safe for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` inside a `<time>` element.
pub fn time_ms(ms: i64) -> String {
    let text = utc_text(ms);
    format!(
        "<time datetime=\"{}Z\">{text}</time>",
        text.replace(' ', "T").trim_end_matches("TUTC")
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_text(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = loopline_core::time::civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// A duration in milliseconds, in words (`3 min 20 s`).
pub fn duration_ms(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// A number with about four significant digits (whole numbers as they are).
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.3}")
    } else if magnitude >= 1e-4 {
        format!("{value:.4}")
    } else {
        format!("{value:.2e}")
    }
}

/// A JSON value as short text: strings bare, numbers through [`number`], null as a dash.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), number),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// A JSON value as escaped HTML text for a table cell or a fact, cut to [`MAX_CELL_CHARS`].
pub fn cell(value: &Value) -> String {
    esc(&clip(&value_text(value), MAX_CELL_CHARS))
}

/// The longest text one cell shows.
pub const MAX_CELL_CHARS: usize = 2_000;

/// `text` cut to `chars` characters, with an ellipsis when cut.
pub fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// A state word as a coloured badge; the colour class follows what the word means.
pub fn badge(state: &str) -> String {
    let tone = match state.to_ascii_lowercase().as_str() {
        "succeeded" | "completed" | "ok" | "passed" | "stable" | "resolved" | "ready" | "cached" | "promoted"
        | "finished" | "inactive" | "healthy" => "good",
        "failed" | "firing" | "rolled_back" | "breached" | "error" | "refused" | "broken" => "bad",
        "running" | "progressing" | "pending" | "queued" | "waiting" | "in_progress" | "started" | "canary"
        | "shadow" => "busy",
        "cancelled" | "skipped" | "silenced" | "acknowledged" => "quiet",
        _ => "plain",
    };
    format!("<span class=\"badge {tone}\">{}</span>", esc(&state.replace('_', " ")))
}

/// A table from a header row and rows of ready HTML cells, scrolled sideways on narrow screens.
pub fn table(caption: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table><caption>{}</caption><thead><tr>",
        esc(caption)
    );
    for name in header {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(name));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A link.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// A paragraph saying there is nothing yet, and how to get something.
pub fn empty(what: &str, how: &str) -> String {
    format!("<p class=\"empty\">{}. {how}</p>", esc(what))
}

/// A definition list from pairs of a term and ready HTML.
pub fn facts(pairs: &[(&str, String)]) -> String {
    let mut out = String::from("<dl class=\"facts\">");
    for (term, value) in pairs {
        let _ = write!(out, "<div><dt>{}</dt><dd>{value}</dd></div>", esc(term));
    }
    out.push_str("</dl>");
    out
}

/// A string field of a JSON object (empty when absent).
pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A whole-number field of a JSON object.
pub fn int(value: &Value, key: &str) -> Option<i64> {
    value.get(key).and_then(Value::as_i64)
}

/// The array field `key` of a JSON object (empty when absent).
pub fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            esc("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(1_764_866_759_000), "2025-12-04 16:45:59 UTC");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(-1000), "1969-12-31 23:59:59 UTC");
        assert_eq!(
            time_ms(0),
            "<time datetime=\"1970-01-01T00:00:00Z\">1970-01-01 00:00:00 UTC</time>"
        );
        // The extremes a hostile store could hold still print.
        assert!(utc_text(i64::MAX).ends_with("UTC"));
        assert!(utc_text(i64::MIN).ends_with("UTC"));
    }

    #[tokio::test]
    async fn pages_are_bounded_and_cells_cut() {
        let huge = Page::new("big", "Data", "<p>x</p>".repeat(2 << 20)).live(5);
        let response = huge.into_response();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert!(body.len() < 10_000, "{}", body.len());
        assert!(String::from_utf8_lossy(&body).contains("This page would be 16 MiB"));
        let long = Value::String(format!("<{}", "a".repeat(10_000)));
        let shown = cell(&long);
        assert!(shown.starts_with("&lt;") && shown.ends_with('…') && shown.len() < 2_100);
        assert_eq!(clip("héllo", 2), "hé…");
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(12.34567), "12.346");
        assert_eq!(number(0.00001234), "1.23e-5");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(duration_ms(200_000), "3 min 20 s");
    }
}
