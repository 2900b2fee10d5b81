//! Hand-drawn SVG plots of series over time: axes with round ticks, one polyline per series, the
//! fitted line dashed over the series it was fitted to, and the threshold as a line (a level, or
//! a slope from where the fit starts). Small enough to inline a hundred points without a plotting
//! library's weight.

use std::fmt::Write as _;

use analyzer::series::{Measure, Series, Threshold};
use analyzer::units::human;

use super::html::escape;

/// Line colours, one per series of a plot.
const COLOURS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];
const FIT_COLOUR: &str = "#444";
const THRESHOLD_COLOUR: &str = "#e377c2";

/// A value with its unit for people: `1.50MiB`, `120/s`.
pub fn value_text(value: f64, unit: &str) -> String {
    match unit.strip_suffix("/s") {
        Some(base) => format!("{}/s", human(value, base)),
        None => human(value, unit),
    }
}

/// A round step of about `span / target` (1, 2 or 5 times a power of ten).
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let power = 10f64.powf(raw.log10().floor());
    let fraction = raw / power;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// Seconds since the first point, in the unit that suits the whole span.
fn elapsed_text(seconds: f64, span: f64) -> String {
    if span >= 2.0 * 3600.0 {
        format!("{:.0} h", seconds / 3600.0)
    } else if span >= 120.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

/// Maps data to the drawing area.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    t0: i64,
    span_seconds: f64,
    y_min: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, t: i64) -> f64 {
        self.left + (t - self.t0) as f64 / 1e9 / self.span_seconds * self.width
    }

    fn y(&self, v: f64) -> f64 {
        self.top + (1.0 - (v - self.y_min) / (self.y_max - self.y_min)) * self.height
    }

    fn bounds(series: &[&Series], threshold_levels: &[f64]) -> (i64, f64, f64, f64) {
        let points = || series.iter().flat_map(|s| s.points.iter());
        let t0 = points().map(|p| p.0).min().unwrap_or(0);
        let t1 = points().map(|p| p.0).max().unwrap_or(0);
        let span = ((t1 - t0) as f64 / 1e9).max(1e-9);
        let values = points()
            .map(|p| p.1)
            .chain(threshold_levels.iter().copied())
            .chain(
                series
                    .iter()
                    .flat_map(|s| fit_ends(s).map(|(_, a, _, b)| [a, b]))
                    .flatten(),
            );
        let (lo, hi) = values.fold((0.0f64, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let hi = if hi <= lo {
            lo + 1.0
        } else {
            hi + (hi - lo) * 0.08
        };
        (t0, if span < 1e-6 { 1.0 } else { span }, lo, hi)
    }
}

/// Where the fitted line starts and ends: (t0, value at t0, t1, value at t1).
fn fit_ends(series: &Series) -> Option<(i64, f64, i64, f64)> {
    let trend = &series.trend;
    let (slope, intercept, span) = (
        trend.slope_per_second?,
        trend.intercept?,
        trend.span_seconds?,
    );
    let first = series.points.first()?.0;
    let last = series.points.last()?.0;
    Some((first, intercept, last, intercept + slope * span))
}

fn polyline_points(frame: &Frame, series: &Series) -> String {
    let mut text = String::new();
    for &(t, v) in &series.points {
        let _ = write!(text, "{:.1},{:.1} ", frame.x(t), frame.y(v));
    }
    text.trim_end().to_owned()
}

fn values_attribute(series: &Series) -> String {
    series
        .points
        .iter()
        .map(|p| format!("{}", p.1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A full plot of `lines` (the first carries the fit and threshold) titled `title`; `id` makes
/// its clip path unique in the page.
pub fn plot(title: &str, lines: &[&Series], id: &str) -> String {
    const WIDTH: f64 = 600.0;
    const HEIGHT: f64 = 230.0;
    let Some(main) = lines.first() else {
        return String::new();
    };
    let unit = main.unit.as_str();
    let levels: Vec<f64> = match main.threshold {
        Some(Threshold::Level(level)) => vec![level],
        _ => Vec::new(),
    };
    let (t0, span_seconds, y_min, y_max) = Frame::bounds(lines, &levels);
    let frame = Frame {
        left: 74.0,
        top: 30.0,
        width: WIDTH - 74.0 - 14.0,
        height: HEIGHT - 30.0 - 34.0,
        t0,
        span_seconds,
        y_min,
        y_max,
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-sample-type="{}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
        escape(&main.sample_type),
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<clipPath id="clip-{id}"><rect x="{}" y="{}" width="{}" height="{}"/></clipPath>"#,
        frame.left, frame.top, frame.width, frame.height
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="18" class="title">{}</text>"#,
        frame.left,
        escape(title)
    );
    // Y axis: round ticks and grid lines.
    let step = nice_step(y_max - y_min, 4.0);
    let mut tick = (y_min / step).ceil() * step;
    while tick <= y_max + step * 1e-9 {
        let y = frame.y(tick);
        let _ = write!(
            svg,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            frame.left,
            frame.left + frame.width,
            frame.left - 6.0,
            y + 4.0,
            escape(&value_text(tick, unit))
        );
        tick += step;
    }
    // X axis: time since the first point.
    let step = nice_step(span_seconds, 6.0);
    let mut seconds = 0.0;
    let baseline = frame.top + frame.height;
    while seconds <= span_seconds + step * 1e-9 {
        let x = frame.left + seconds / span_seconds * frame.width;
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="{baseline:.1}" y2="{:.1}" class="axis"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
            baseline + 4.0,
            baseline + 17.0,
            elapsed_text(seconds, span_seconds)
        );
        seconds += step;
    }
    let _ = write!(
        svg,
        r#"<line x1="{0}" x2="{1}" y1="{2:.1}" y2="{2:.1}" class="axis"/><line x1="{0}" x2="{0}" y1="{3}" y2="{2:.1}" class="axis"/>"#,
        frame.left,
        frame.left + frame.width,
        baseline,
        frame.top
    );
    let mut legend: Vec<(String, &str, &str)> = Vec::new();
    let clip = format!(r#"clip-path="url(#clip-{id})""#);
    // The threshold, then the fit, under the data.
    let fit = fit_ends(main);
    match (main.threshold, fit.or_else(|| first_point_line(main))) {
        (Some(Threshold::Level(level)), _) => {
            let y = frame.y(level);
            let _ = write!(
                svg,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="threshold" stroke="{THRESHOLD_COLOUR}" data-threshold="{level}"><title>threshold {}</title></line>"#,
                frame.left,
                frame.left + frame.width,
                escape(&value_text(level, unit))
            );
            legend.push((
                format!("threshold {}", value_text(level, unit)),
                THRESHOLD_COLOUR,
                "4 3",
            ));
        }
        (Some(Threshold::Slope(slope)), Some((t_start, v_start, _, _))) => {
            let t_end = t0 + (span_seconds * 1e9) as i64;
            let v_end = v_start + slope * (t_end - t_start) as f64 / 1e9;
            let rate = value_text(slope, unit);
            let _ = write!(
                svg,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="threshold" stroke="{THRESHOLD_COLOUR}" data-threshold-slope="{slope}" {clip}><title>threshold {rate}/s</title></line>"#,
                frame.x(t_start),
                frame.x(t_end),
                frame.y(v_start),
                frame.y(v_end),
            );
            legend.push((format!("threshold {rate}/s"), THRESHOLD_COLOUR, "4 3"));
        }
        _ => {}
    }
    // A slope of a rate is not what the analysis judges: levels only.
    let level_fit = fit.filter(|_| main.measure == Measure::Level);
    if let (Some((t_start, v_start, t_end, v_end)), Some(slope)) =
        (level_fit, main.trend.slope_per_second)
    {
        let rate = value_text(slope, unit);
        let _ = write!(
            svg,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="fit" stroke="{FIT_COLOUR}" data-slope="{slope}" {clip}><title>fitted slope {rate}/s</title></line>"#,
            frame.x(t_start),
            frame.x(t_end),
            frame.y(v_start),
            frame.y(v_end),
        );
        legend.push((format!("fit {rate}/s"), FIT_COLOUR, "6 3"));
    }
    for (i, series) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let _ = write!(
            svg,
            r#"<polyline class="series" data-series="{}" data-values="{}" points="{}" stroke="{colour}"/>"#,
            escape(&series.sample_type),
            values_attribute(series),
            polyline_points(&frame, series)
        );
        if series.points.len() <= 120 {
            for &(t, v) in &series.points {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{}: {}</title></circle>"#,
                    frame.x(t),
                    frame.y(v),
                    escape(&series.sample_type),
                    escape(&value_text(v, &series.unit))
                );
            }
        }
        legend.insert(i, (series.sample_type.clone(), colour, ""));
    }
    // The legend, right-aligned along the top.
    let mut x = WIDTH - 14.0;
    for (label, colour, dash) in legend.iter().rev() {
        let width = 7.0 * label.chars().count() as f64;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="18" class="legend" text-anchor="end">{}</text><line x1="{:.1}" x2="{:.1}" y1="14" y2="14" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
            escape(label),
            x - width - 20.0,
            x - width - 4.0,
        );
        x -= width + 28.0;
    }
    svg.push_str("</svg>");
    svg
}

/// Without a fit (one point), a slope threshold starts at the first point.
fn first_point_line(series: &Series) -> Option<(i64, f64, i64, f64)> {
    let &(t, v) = series.points.first()?;
    Some((t, v, t, v))
}

/// A small line of one site's series, with its threshold when it is a level.
pub fn sparkline(series: &Series) -> String {
    const WIDTH: f64 = 180.0;
    const HEIGHT: f64 = 34.0;
    let levels: Vec<f64> = match series.threshold {
        Some(Threshold::Level(level)) => vec![level],
        _ => Vec::new(),
    };
    let (t0, span_seconds, y_min, y_max) = Frame::bounds(&[series], &levels);
    let frame = Frame {
        left: 2.0,
        top: 3.0,
        width: WIDTH - 4.0,
        height: HEIGHT - 6.0,
        t0,
        span_seconds,
        y_min,
        y_max,
    };
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">"#
    );
    for level in levels {
        let y = frame.y(level);
        let _ = write!(
            svg,
            r#"<line x1="0" x2="{WIDTH}" y1="{y:.1}" y2="{y:.1}" class="threshold" stroke="{THRESHOLD_COLOUR}" data-threshold="{level}"/>"#
        );
    }
    let _ = write!(
        svg,
        r#"<polyline class="series" data-series="{}" data-values="{}" points="{}" stroke="{}"/></svg>"#,
        escape(&series.sample_type),
        values_attribute(series),
        polyline_points(&frame, series),
        COLOURS[0]
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use analyzer::trend::fit;

    fn series(points: &[(i64, f64)], threshold: Option<Threshold>) -> Series {
        Series {
            sample_type: "timers_live".to_owned(),
            unit: "count".to_owned(),
            measure: Measure::Level,
            points: points.to_vec(),
            trend: fit(points),
            threshold,
        }
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(100.0, 4.0), 50.0);
        assert_eq!(nice_step(7.0, 4.0), 2.0);
        assert_eq!(nice_step(0.3, 6.0), 0.05);
        assert_eq!(value_text(2048.0, "bytes/s"), "2.00KiB/s");
    }

    #[test]
    fn a_rising_series_draws_up_with_its_fit_and_threshold() {
        let s = series(
            &[(0, 10.0), (1_000_000_000, 20.0), (2_000_000_000, 30.0)],
            Some(Threshold::Slope(5.0)),
        );
        let svg = plot("live timers", &[&s], "t");
        let points = svg.split(r#"points=""#).nth(1).unwrap();
        let ys: Vec<f64> = points
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|xy| xy.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(
            ys[0] > ys[1] && ys[1] > ys[2],
            "SVG y grows downwards: {ys:?}"
        );
        assert!(
            svg.contains(r#"class="fit""#) && svg.contains(r#"data-slope="10""#),
            "{svg}"
        );
        assert!(svg.contains(r#"data-threshold-slope="5""#), "{svg}");
        assert!(svg.contains("fit 10/s"), "{svg}");
        let flat = series(&[(0, 3.0)], Some(Threshold::Level(100.0)));
        assert!(sparkline(&flat).contains(r#"data-threshold="100""#));
        assert!(!plot("one point", &[&flat], "o").contains(r#"class="fit""#));
    }
}
