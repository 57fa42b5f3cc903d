//! The training curve: a small self-contained SVG written into the output directory at the end
//! of training (`training-curve.svg`), from the validation history — the running training loss
//! and the validation loss against the optimizer step on the left, validation accuracy on the
//! right (pairwise objectives only; regression has none).
//!
//! Hand-written SVG rather than a plotting crate: two line charts need a few dozen lines, no
//! fonts or rasteriser, and the file opens in any browser.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::model::write_atomically;
use crate::train::EvalMetrics;
use crate::ModelError;

/// The file name in the model directory.
pub const CURVE_FILE: &str = "training-curve.svg";

const PANEL_W: f64 = 340.0;
const PANEL_H: f64 = 220.0;
const MARGIN_L: f64 = 56.0;
const MARGIN_T: f64 = 34.0;
const MARGIN_B: f64 = 40.0;
const GAP: f64 = 70.0;

struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// The SVG for a validation history, or `None` when there is nothing to draw (no validation).
pub fn curve_svg(history: &[EvalMetrics], title: &str) -> Option<String> {
    let finite = |v: f64| v.is_finite().then_some(v);
    let pick = |f: &dyn Fn(&EvalMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|m| Some((m.step as f64, f(m).and_then(finite)?)))
            .collect()
    };
    let losses = [
        Series {
            name: "training loss (running)",
            colour: "#1f77b4",
            dashed: true,
            points: pick(&|m| m.train_loss),
        },
        Series {
            name: "validation loss",
            colour: "#d62728",
            dashed: false,
            points: pick(&|m| Some(m.loss)),
        },
    ];
    let accuracy = [Series {
        name: "validation accuracy",
        colour: "#2ca02c",
        dashed: false,
        points: pick(&|m| m.accuracy),
    }];
    if losses.iter().all(|s| s.points.is_empty()) {
        return None;
    }
    let width = MARGIN_L * 2.0 + PANEL_W * 2.0 + GAP;
    let height = MARGIN_T + PANEL_H + MARGIN_B + 10.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="16" font-size="13" text-anchor="middle">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    panel(&mut svg, MARGIN_L, "loss", &losses, None);
    let has_accuracy = !accuracy[0].points.is_empty();
    if has_accuracy {
        panel(
            &mut svg,
            MARGIN_L * 2.0 + PANEL_W + GAP - MARGIN_L,
            "accuracy",
            &accuracy,
            Some((0.0, 1.0)),
        );
    }
    svg.push_str("</svg>\n");
    Some(svg)
}

/// Writes [`CURVE_FILE`] into `dir` (atomically); `Ok(None)` when there is no validation history.
pub fn write_curve(
    dir: &Path,
    history: &[EvalMetrics],
    title: &str,
) -> Result<Option<PathBuf>, ModelError> {
    match curve_svg(history, title) {
        None => Ok(None),
        Some(svg) => {
            let path = dir.join(CURVE_FILE);
            write_atomically(&path, svg.as_bytes())?;
            Ok(Some(path))
        }
    }
}

fn panel(
    svg: &mut String,
    left: f64,
    label: &str,
    series: &[Series<'_>],
    fixed: Option<(f64, f64)>,
) {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = extent(all().map(|p| p.0));
    let (y0, y1) = fixed.unwrap_or_else(|| extent(all().map(|p| p.1)));
    let (top, bottom) = (MARGIN_T, MARGIN_T + PANEL_H);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * PANEL_W;
    let sy = |y: f64| bottom - (y - y0) / (y1 - y0) * PANEL_H;
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#888"/>"##
    );
    for i in 0..=4 {
        let t = f64::from(i) / 4.0;
        let (y, value) = (bottom - t * PANEL_H, y0 + t * (y1 - y0));
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + PANEL_W,
            left - 4.0,
            y + 4.0,
            tick(value)
        );
        let (x, step) = (left + t * PANEL_W, x0 + t * (x1 - x0));
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            bottom + 14.0,
            tick(step)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">optimizer step</text><text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{label}</text>"#,
        left + PANEL_W / 2.0,
        bottom + 30.0,
        left - 42.0,
        top + PANEL_H / 2.0,
        left - 42.0,
        top + PANEL_H / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let dash = if s.dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        if s.points.len() > 1 {
            let points: Vec<String> = s
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5"{dash} points="{}"/>"#,
                s.colour,
                points.join(" ")
            );
        }
        for &(x, y) in &s.points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"><title>{} at step {}: {:.4}</title></circle>"#,
                sx(x),
                sy(y),
                s.colour,
                s.name,
                x,
                y
            );
        }
        let ly = top + 14.0 + 14.0 * i as f64;
        let _ = write!(
            svg,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="1.5"{dash}/><text x="{}" y="{}">{}</text>"#,
            left + 8.0,
            left + 26.0,
            s.colour,
            left + 30.0,
            ly + 4.0,
            s.name
        );
    }
}

/// The range of some values, widened when empty or flat so that scales never divide by zero.
fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(
        step: usize,
        train_loss: Option<f64>,
        loss: f64,
        accuracy: Option<f64>,
    ) -> EvalMetrics {
        // Built from JSON (finite placeholders), then the values set: JSON has no NaN.
        let mut m: EvalMetrics = serde_json::from_value(serde_json::json!({
            "step": step, "train_loss": null, "loss": 0.0, "accuracy": null,
            "reward_mean": 0.0, "reward_std": 1.0
        }))
        .expect("EvalMetrics fields");
        (m.train_loss, m.loss, m.accuracy) = (train_loss, loss, accuracy);
        m
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn draws_losses_and_accuracy() {
        let history = [
            metrics(10, Some(0.69), 0.68, Some(0.5)),
            metrics(20, Some(0.55), 0.60, Some(0.625)),
            metrics(30, Some(0.40), 0.58, Some(0.75)),
        ];
        let svg = curve_svg(&history, "bt on <data> & more").unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(count(&svg, "<polyline"), 3, "two losses and the accuracy");
        assert_eq!(count(&svg, "<circle"), 9);
        assert!(svg.contains("bt on &lt;data&gt; &amp; more"));
        assert!(svg.contains("validation accuracy at step 30: 0.7500"));
        // Every drawn point lies inside the picture.
        for part in svg.split("cx=\"").skip(1) {
            let x: f64 = part.split('"').next().unwrap().parse().unwrap();
            assert!((0.0..=830.0).contains(&x), "{x}");
        }
    }

    #[test]
    fn regression_has_no_accuracy_panel_and_one_point_is_a_dot() {
        let svg = curve_svg(&[metrics(5, None, 1.5, None)], "regression").unwrap();
        assert_eq!(count(&svg, "<polyline"), 0);
        assert_eq!(count(&svg, "<circle"), 1);
        assert!(!svg.contains(">accuracy<"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn nothing_to_draw_without_validation_and_non_finite_values_are_skipped() {
        assert!(curve_svg(&[], "x").is_none());
        let svg = curve_svg(
            &[
                metrics(1, Some(f64::NAN), 0.7, Some(0.5)),
                metrics(2, Some(0.6), f64::INFINITY, Some(0.6)),
            ],
            "x",
        )
        .unwrap();
        assert_eq!(count(&svg, "<circle"), 4, "{svg}");
        assert!(!svg.contains("NaN"));
    }
}
