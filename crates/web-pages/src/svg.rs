//! Inline SVG charts drawn on the server, as the drift report draws its plots: no script, no external
//! resource. Colours are presentation attributes (the pages' content policy allows no inline styles), and
//! each chart names itself for screen readers; the figures it draws are also in a table beside it.

use std::fmt::Write;

use crate::html::{esc, number, utc_text};

/// Colours for series, distinguishable and dark enough on white (WCAG 3:1 for graphics).
pub const PALETTE: &[&str] = &[
    "#0b57a4", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0f766e", "#a16207", "#be185d",
];

/// One line on a chart: `(x in ms since the epoch, y)` points.
pub struct Series {
    /// The legend's name.
    pub name: String,
    /// Points, in any order.
    pub points: Vec<(f64, f64)>,
}

/// A dashed horizontal line (a threshold).
pub struct Rule {
    /// Its legend text.
    pub name: String,
    /// Where it lies.
    pub y: f64,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 40.0;

/// A line chart over time. Non-finite points are left out; an empty chart says so.
pub fn time_chart(title: &str, series: &[Series], rules: &[Rule]) -> String {
    let finite = |(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied().filter(finite))
        .collect();
    if points.is_empty() {
        return format!("<p class=\"empty\">{}: no figures yet.</p>", esc(title));
    }
    let (mut x_min, mut x_max) = min_max(points.iter().map(|p| p.0));
    let (mut y_min, mut y_max) = min_max(points.iter().map(|p| p.1).chain(rules.iter().map(|r| r.y)));
    if x_min == x_max {
        (x_min, x_max) = (x_min - 60_000.0, x_max + 60_000.0);
    }
    if y_min == y_max {
        (y_min, y_max) = (y_min - 1.0, y_max + 1.0);
    }
    let pad = (y_max - y_min) * 0.05;
    if y_min >= 0.0 && y_min - pad < 0.0 {
        y_min = 0.0;
    } else {
        y_min -= pad;
    }
    y_max += pad;
    let sx = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * (WIDTH - LEFT - RIGHT);
    let sy = |y: f64| TOP + (y_max - y) / (y_max - y_min) * (HEIGHT - TOP - BOTTOM);
    let mut out = format!(
        "<figure><svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" \
         aria-label=\"{}\"><title>{}</title>",
        esc(title),
        esc(title)
    );
    for i in 0..=4 {
        let y = y_min + (y_max - y_min) * f64::from(i) / 4.0;
        let py = sy(y);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#d0d7de\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            esc(&number(y))
        );
    }
    for (i, x) in [x_min, (x_min + x_max) / 2.0, x_max].into_iter().enumerate() {
        let anchor = ["start", "middle", "end"][i];
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            sx(x),
            HEIGHT - 12.0,
            esc(utc_text(x as i64).trim_end_matches(" UTC"))
        );
    }
    for rule in rules.iter().filter(|r| r.y.is_finite()) {
        let py = sy(rule.y);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#a40e26\" stroke-dasharray=\"6 4\"/>",
            WIDTH - RIGHT
        );
    }
    for (index, line) in series.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        let mut ordered: Vec<(f64, f64)> = line.points.iter().copied().filter(finite).collect();
        ordered.sort_by(|a, b| a.0.total_cmp(&b.0));
        if ordered.len() > 1 {
            let path: Vec<String> = ordered
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            let _ = write!(
                out,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                path.join(" ")
            );
        }
        for (x, y) in &ordered {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: {} at {}</title></circle>",
                sx(*x),
                sy(*y),
                esc(&line.name),
                esc(&number(*y)),
                esc(&utc_text(*x as i64))
            );
        }
    }
    out.push_str("</svg><figcaption>");
    out.push_str(&legend(
        &series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        rules,
    ));
    out.push_str("</figcaption></figure>");
    out
}

fn legend(names: &[&str], rules: &[Rule]) -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for (index, name) in names.iter().enumerate() {
        let _ = write!(out, "<li>{}{}</li>", swatch(PALETTE[index % PALETTE.len()]), esc(name));
    }
    for rule in rules {
        let _ = write!(
            out,
            "<li>{}{} ({})</li>",
            swatch("#a40e26"),
            esc(&rule.name),
            esc(&number(rule.y))
        );
    }
    out.push_str("</ul>");
    out
}

/// A small coloured square.
pub fn swatch(colour: &str) -> String {
    format!(
        "<svg class=\"swatch\" width=\"12\" height=\"12\" aria-hidden=\"true\"><rect width=\"12\" height=\"12\" \
         fill=\"{colour}\"/></svg>"
    )
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Traffic shares (percent by version) as one stacked bar with a legend.
pub fn shares_bar(label: &str, shares: &[(String, f64)]) -> String {
    let total: f64 = shares.iter().map(|(_, s)| s.max(0.0)).filter(|s| s.is_finite()).sum();
    if total <= 0.0 {
        return String::new();
    }
    let mut out = format!(
        "<figure><svg viewBox=\"0 0 {WIDTH} 28\" width=\"{WIDTH}\" height=\"28\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
    let mut x = 0.0;
    for (index, (version, share)) in shares.iter().enumerate() {
        let share = if share.is_finite() { share.max(0.0) } else { 0.0 };
        let width = share / total * WIDTH;
        let colour = PALETTE[index % PALETTE.len()];
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"28\" fill=\"{colour}\">\
             <title>version {}: {}%</title></rect>",
            esc(version),
            esc(&number(share))
        );
        if width > 70.0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"18\" fill=\"#fff\">v{} · {}%</text>",
                x + 8.0,
                esc(version),
                esc(&number(share))
            );
        }
        x += width;
    }
    out.push_str("</svg><figcaption><ul class=\"legend\">");
    for (index, (version, share)) in shares.iter().enumerate() {
        let _ = write!(
            out,
            "<li>{}version {}: {}%</li>",
            swatch(PALETTE[index % PALETTE.len()]),
            esc(version),
            esc(&number(*share))
        );
    }
    out.push_str("</ul></figcaption></figure>");
    out
}

/// A node of a directed graph.
pub struct Node {
    /// Its key, as edges name it.
    pub key: String,
    /// The text on it.
    pub label: String,
    /// A second, smaller line (its state).
    pub detail: String,
    /// Where clicking it leads, if anywhere.
    pub href: Option<String>,
    /// Its fill colour.
    pub fill: &'static str,
}

/// A graph drawn left to right in layers (each node one layer after its furthest parent), for a pipeline's
/// steps and for lineage. Edges to unknown nodes are left out; a cycle cannot raise a layer past the node
/// count.
pub fn layered_graph(title: &str, nodes: &[Node], edges: &[(String, String)]) -> String {
    if nodes.is_empty() {
        return String::new();
    }
    let index = |key: &str| nodes.iter().position(|n| n.key == key);
    let edges: Vec<(usize, usize)> = edges
        .iter()
        .filter_map(|(from, to)| Some((index(from)?, index(to)?)))
        .filter(|(from, to)| from != to)
        .collect();
    let mut layer = vec![0usize; nodes.len()];
    for _ in 0..nodes.len() {
        let mut moved = false;
        for (from, to) in &edges {
            if layer[*to] <= layer[*from] && layer[*from] + 1 < nodes.len() {
                layer[*to] = layer[*from] + 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let layers = layer.iter().max().copied().unwrap_or(0) + 1;
    let mut row = vec![0usize; nodes.len()];
    let mut per_layer = vec![0usize; layers];
    for (node, l) in layer.iter().enumerate() {
        row[node] = per_layer[*l];
        per_layer[*l] += 1;
    }
    let tallest = per_layer.iter().max().copied().unwrap_or(1);
    let (node_w, node_h, gap_x, gap_y) = (170.0, 48.0, 60.0, 18.0);
    let width = layers as f64 * (node_w + gap_x) - gap_x + 20.0;
    let height = tallest as f64 * (node_h + gap_y) - gap_y + 20.0;
    let position = |n: usize| {
        (
            10.0 + layer[n] as f64 * (node_w + gap_x),
            10.0 + row[n] as f64 * (node_h + gap_y),
        )
    };
    let mut out = format!(
        "<figure><svg viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\" \
         role=\"group\" aria-label=\"{}\"><title>{}</title>\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#57606a\"/></marker></defs>",
        esc(title),
        esc(title)
    );
    for (from, to) in &edges {
        let (fx, fy) = position(*from);
        let (tx, ty) = position(*to);
        let (x1, y1, x2, y2) = (fx + node_w, fy + node_h / 2.0, tx, ty + node_h / 2.0);
        let mid = (x1 + x2) / 2.0;
        let _ = write!(
            out,
            "<path d=\"M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}\" fill=\"none\" \
             stroke=\"#57606a\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>"
        );
    }
    for (n, node) in nodes.iter().enumerate() {
        let (x, y) = position(n);
        let shape = format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{node_w}\" height=\"{node_h}\" rx=\"6\" fill=\"{}\" \
             stroke=\"#57606a\"/><text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"600\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            node.fill,
            x + 8.0,
            y + 19.0,
            esc(&clip(&node.label, 24)),
            x + 8.0,
            y + 37.0,
            esc(&clip(&node.detail, 26))
        );
        let name = format!("{}: {}", node.label, node.detail);
        match &node.href {
            Some(href) => {
                let _ = write!(
                    out,
                    "<a href=\"{}\" aria-label=\"{}\"><title>{}</title>{shape}</a>",
                    esc(href),
                    esc(&name),
                    esc(&name)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<g role=\"img\" aria-label=\"{}\"><title>{}</title>{shape}</g>",
                    esc(&name),
                    esc(&name)
                );
            }
        }
    }
    out.push_str("</svg></figure>");
    out
}

fn clip(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(chars - 1).collect();
    clipped.push('…');
    clipped
}

/// The fill for a state word (pale, so the dark text on it stays readable).
pub fn state_fill(state: &str) -> &'static str {
    match state.to_ascii_lowercase().as_str() {
        "succeeded" | "completed" | "cached" | "passed" | "finished" => "#dafbe1",
        "failed" | "cancelled" | "timed_out" => "#ffebe9",
        "running" | "queued" | "pending" | "retrying" => "#fff1c2",
        _ => "#eaeef2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_leave_out_what_cannot_be_drawn() {
        let chart = time_chart(
            "drift <of> x",
            &[Series {
                name: "a&b".into(),
                points: vec![(1.0e12, 0.5), (f64::NAN, 1.0), (1.0e12 + 60_000.0, f64::INFINITY)],
            }],
            &[Rule {
                name: "threshold".into(),
                y: 0.1,
            }],
        );
        assert!(chart.contains("aria-label=\"drift &lt;of&gt; x\""));
        assert!(chart.contains("a&amp;b"));
        assert_eq!(chart.matches("<circle").count(), 1);
        assert!(!chart.contains("NaN"));
        assert!(time_chart("empty", &[], &[]).contains("no figures yet"));
    }

    #[test]
    fn graphs_layer_by_longest_path_and_survive_cycles() {
        let node = |key: &str| Node {
            key: key.into(),
            label: key.into(),
            detail: "succeeded".into(),
            href: Some(format!("/x?step={key}")),
            fill: state_fill("succeeded"),
        };
        let nodes = vec![node("a"), node("b"), node("c")];
        let edges = vec![
            ("a".to_string(), "b".to_string()),
            ("b".to_string(), "c".to_string()),
            ("a".to_string(), "c".to_string()),
            ("c".to_string(), "a".to_string()),
            ("a".to_string(), "missing".to_string()),
        ];
        let svg = layered_graph("steps", &nodes, &edges);
        assert_eq!(svg.matches("marker-end=").count(), 4);
        assert!(svg.contains("href=\"/x?step=c\""));
    }
}
