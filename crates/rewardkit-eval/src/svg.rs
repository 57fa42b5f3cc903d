//! Small hand-written SVG charts for the HTML report: bars with interval whiskers, a reliability
//! diagram, overlaid histograms and line charts. Plain SVG 1.1 text, no scripts.

use std::fmt::Write as _;

use crate::evaluate::ReliabilityBin;
use crate::report::escape;

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 70.0;
const COLORS: [&str; 4] = ["#3b6fd4", "#e07b39", "#3a9e5c", "#9b59b6"];

/// A value with an optional interval.
pub type Bar = (f64, Option<(f64, f64)>);

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn new(x0: f64, x1: f64, y0: f64, y1: f64) -> Frame {
        let (x1, y1) = (
            if x1 > x0 { x1 } else { x0 + 1.0 },
            if y1 > y0 { y1 } else { y0 + 1.0 },
        );
        Frame { x0, x1, y0, y1 }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)
    }
}

fn open(out: &mut String, label: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\"><title>{}</title>\
         <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/>",
        escape(label)
    );
}

/// "Nice" tick values covering [low, high] (steps of 1, 2 or 5 × 10^k).
pub fn nice_ticks(low: f64, high: f64, target: usize) -> Vec<f64> {
    if !(low.is_finite() && high.is_finite()) || high <= low {
        return vec![low];
    }
    let raw = (high - low) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut k = 0.0;
    while first + k * step <= high + step * 1e-9 && ticks.len() < 50 {
        let t = first + k * step;
        ticks.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        k += 1.0;
    }
    ticks
}

fn tick_label(t: f64) -> String {
    if t == t.round() && t.abs() < 1e9 {
        format!("{t:.0}")
    } else {
        let s = format!("{t:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn y_axis(out: &mut String, frame: &Frame) {
    for t in nice_ticks(frame.y0, frame.y1, 5) {
        let y = frame.py(t);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e6e8ec\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            tick_label(t)
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>",
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM
    );
}

/// Tick labels under the x axis at `ticks`, and the axis title (escaped) centred below them.
fn x_axis(out: &mut String, frame: &Frame, ticks: Vec<f64>, title: &str) {
    for t in ticks {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            frame.px(t),
            HEIGHT - BOTTOM + 16.0,
            tick_label(t)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 24.0,
        escape(title)
    );
}

fn legend(out: &mut String, names: &[&str]) {
    let mut x = LEFT + 8.0;
    for (k, name) in names.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"18\">{}</text>",
            x + 16.0,
            escape(name)
        );
        x += 28.0 + 6.5 * name.chars().count().min(60) as f64;
    }
}

/// The smallest and largest finite value, or `None` when there is none.
fn finite_extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |extent, v| match extent {
            None => Some((v, v)),
            Some((low, high)) => Some((low.min(v), high.max(v))),
        })
}

fn value_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let Some((low, high)) = finite_extent(values) else {
        return (0.0, 1.0);
    };
    if low >= 0.0 && high <= 1.0 {
        return (0.0, 1.0);
    }
    let pad = (high - low).max(1e-9) * 0.08;
    (low.min(0.0) - if low < 0.0 { pad } else { 0.0 }, high + pad)
}

/// Grouped bars with interval whiskers: one group per label, one bar per series.
pub fn bars(labels: &[String], series: &[(String, Vec<Bar>)]) -> String {
    let mut out = String::new();
    open(&mut out, "bar chart");
    let all = series.iter().flat_map(|(_, bars)| {
        bars.iter()
            .flat_map(|(v, ci)| [Some(*v), ci.map(|c| c.0), ci.map(|c| c.1)])
            .flatten()
    });
    let (y0, y1) = value_range(all);
    let frame = Frame::new(0.0, labels.len().max(1) as f64, y0, y1);
    y_axis(&mut out, &frame);
    let group = (WIDTH - LEFT - RIGHT) / labels.len().max(1) as f64;
    let bar = (group * 0.75 / series.len().max(1) as f64).min(48.0);
    for (g, label) in labels.iter().enumerate() {
        let centre = LEFT + group * (g as f64 + 0.5);
        for (s, (_, bars)) in series.iter().enumerate() {
            let Some(&(value, ci)) = bars.get(g) else {
                continue;
            };
            let color = COLORS[s % COLORS.len()];
            let x = centre - bar * series.len() as f64 / 2.0 + bar * s as f64;
            if value.is_finite() {
                let (top, base) = (frame.py(value.max(y0)), frame.py(0f64.max(y0)));
                let (y, h) = if top < base {
                    (top, base - top)
                } else {
                    (base, top - base)
                };
                let _ = write!(
                    out,
                    "<rect class=\"bar\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" \
                     fill=\"{color}\" fill-opacity=\"0.85\"><title>{}: {value:.4}</title></rect>",
                    x + 1.0,
                    bar - 2.0,
                    escape(label)
                );
            }
            if let Some((low, high)) = ci.filter(|c| c.0.is_finite() && c.1.is_finite()) {
                let mid = x + bar / 2.0;
                let (ya, yb) = (frame.py(low), frame.py(high));
                let _ = write!(
                    out,
                    "<path class=\"whisker\" d=\"M{mid:.1} {ya:.1}V{yb:.1}M{:.1} {ya:.1}H{:.1}\
                     M{:.1} {yb:.1}H{:.1}\" stroke=\"#222\" stroke-width=\"1.3\" fill=\"none\"/>",
                    mid - 5.0,
                    mid + 5.0,
                    mid - 5.0,
                    mid + 5.0
                );
            }
        }
        let short: String = label.chars().take(26).collect();
        let _ = write!(
            out,
            "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"end\" \
             transform=\"rotate(-28 {centre:.1} {:.1})\">{}</text>",
            HEIGHT - BOTTOM + 14.0,
            HEIGHT - BOTTOM + 14.0,
            escape(&short)
        );
    }
    if series.len() > 1 {
        let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
        legend(&mut out, &names);
    }
    out.push_str("</svg>");
    out
}

/// The reliability diagram: observed frequency per bin against the diagonal, with counts.
pub fn reliability(bins: &[ReliabilityBin]) -> String {
    let mut out = String::new();
    open(&mut out, "reliability diagram");
    let frame = Frame::new(0.0, 1.0, 0.0, 1.0);
    y_axis(&mut out, &frame);
    let _ = write!(
        out,
        "<line class=\"diagonal\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" \
         stroke=\"#999\" stroke-dasharray=\"5 4\"/>",
        frame.px(0.0),
        frame.py(0.0),
        frame.px(1.0),
        frame.py(1.0)
    );
    for bin in bins {
        let (x, w) = (frame.px(bin.low), frame.px(bin.high) - frame.px(bin.low));
        if bin.count > 0 && bin.accuracy.is_finite() {
            let y = frame.py(bin.accuracy);
            let _ = write!(
                out,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"{}\" fill-opacity=\"0.8\"><title>[{:.2}, {:.2}): {} points, observed \
                 {:.3}, predicted {:.3}</title></rect>\
                 <circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#e07b39\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{}</text>",
                x + 1.0,
                w - 2.0,
                frame.py(0.0) - y,
                COLORS[0],
                bin.low,
                bin.high,
                bin.count,
                bin.accuracy,
                bin.confidence,
                frame.px(bin.confidence),
                frame.py(bin.confidence),
                x + w / 2.0,
                y - 4.0,
                bin.count
            );
        }
    }
    x_axis(
        &mut out,
        &frame,
        nice_ticks(0.0, 1.0, 5),
        "predicted P(first preferred) = σ(r_a − r_b); bars: observed frequency, dots: mean \
         prediction",
    );
    out.push_str("</svg>");
    out
}

/// Overlaid histograms on shared bins, each normalised to fractions of its own total.
pub fn histogram(edges: &[f64], series: &[(&str, &Vec<usize>)]) -> String {
    let mut out = String::new();
    open(&mut out, "histogram");
    if edges.len() < 2 {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no scores</text></svg>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return out;
    }
    let fractions: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, counts)| {
            let total = counts.iter().sum::<usize>().max(1) as f64;
            counts.iter().map(|&c| c as f64 / total).collect()
        })
        .collect();
    let top = fractions
        .iter()
        .flatten()
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let frame = Frame::new(edges[0], edges[edges.len() - 1], 0.0, top * 1.1);
    y_axis(&mut out, &frame);
    for (s, values) in fractions.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        for (b, &f) in values.iter().enumerate() {
            if f == 0.0 {
                continue;
            }
            let (x0, x1) = (frame.px(edges[b]), frame.px(edges[b + 1]));
            let y = frame.py(f);
            let _ = write!(
                out,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"{color}\" fill-opacity=\"0.45\" stroke=\"{color}\"><title>{}: [{:.4}, \
                 {:.4}) {:.1}%</title></rect>",
                x0 + 0.5,
                (x1 - x0 - 1.0).max(0.5),
                frame.py(0.0) - y,
                escape(series[s].0),
                edges[b],
                edges[b + 1],
                f * 100.0
            );
        }
    }
    x_axis(
        &mut out,
        &frame,
        nice_ticks(edges[0], edges[edges.len() - 1], 8),
        "reward (fraction of each group per bin)",
    );
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    legend(&mut out, &names);
    out.push_str("</svg>");
    out
}

/// Line chart of several series over shared x values; `unit_y` fixes the y axis to [0, 1] when
/// every value fits.
pub fn lines(x: &[f64], series: &[(&str, Vec<f64>)], x_label: &str, unit_y: bool) -> String {
    let mut out = String::new();
    open(&mut out, "line chart");
    let (x0, x1) = value_range_plain(x.iter().copied());
    let (y0, y1) = if unit_y {
        value_range(series.iter().flat_map(|(_, v)| v.iter().copied()))
    } else {
        value_range_plain(series.iter().flat_map(|(_, v)| v.iter().copied()))
    };
    let frame = Frame::new(x0, x1, y0, y1);
    y_axis(&mut out, &frame);
    for (s, (name, values)) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let mut path = String::new();
        for (k, (&xv, &yv)) in x.iter().zip(values).enumerate() {
            if !(xv.is_finite() && yv.is_finite()) {
                continue;
            }
            let _ = write!(
                path,
                "{}{:.1} {:.1}",
                if k == 0 || path.is_empty() { "M" } else { "L" },
                frame.px(xv),
                frame.py(yv)
            );
        }
        // Dashes tell apart series that coincide (a perfect verifier's pick is the oracle).
        let dash = ["", " stroke-dasharray=\"7 4\"", " stroke-dasharray=\"2 3\""][s % 3];
        let _ = write!(
            out,
            "<path class=\"line\" d=\"{path}\" stroke=\"{color}\" stroke-width=\"2\"{dash} \
             fill=\"none\"><title>{}</title></path>",
            escape(name)
        );
        if x.len() <= 40 {
            for (&xv, &yv) in x.iter().zip(values) {
                if xv.is_finite() && yv.is_finite() {
                    let _ = write!(
                        out,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{color}\">\
                         <title>{}: {xv} → {yv:.4}</title></circle>",
                        frame.px(xv),
                        frame.py(yv),
                        escape(name)
                    );
                }
            }
        }
    }
    let ticks = if x.len() <= 12 && x.iter().all(|v| v.is_finite()) {
        x.to_vec()
    } else {
        nice_ticks(x0, x1, 8)
    };
    x_axis(&mut out, &frame, ticks, x_label);
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    legend(&mut out, &names);
    out.push_str("</svg>");
    out
}

fn value_range_plain(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let Some((low, high)) = finite_extent(values) else {
        return (0.0, 1.0);
    };
    if low == high {
        (low - 0.5, high + 0.5)
    } else {
        (low, high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 1.0, 5),
            [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(nice_ticks(0.0, 100.0, 4), [0.0, 50.0, 100.0]);
        assert_eq!(
            nice_ticks(-3.0, 3.0, 6),
            [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(nice_ticks(1.0, 1.0, 5), [1.0]);
    }

    #[test]
    fn charts_are_well_formed_svg_with_escaped_text() {
        let svg = bars(
            &["a<b".to_owned(), "c".to_owned()],
            &[(
                "x & y".to_owned(),
                vec![(0.5, Some((0.4, 0.6))), (f64::NAN, None)],
            )],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert_eq!(
            svg.matches("class=\"bar\"").count(),
            1,
            "a NaN value draws no bar"
        );
        assert_eq!(svg.matches("class=\"whisker\"").count(), 1);
        assert!(!svg.contains("NaN"));
        let svg = lines(&[1.0, 2.0], &[("r", vec![0.5, f64::NAN])], "N", true);
        assert!(!svg.contains("NaN"));
        let svg = histogram(&[], &[]);
        assert!(svg.contains("no scores"));
    }
}
