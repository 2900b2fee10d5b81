//! Trends of one quantity over several profiles of the same process, in time order.

/// Growth of a quantity over a series of (time, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub points: usize,
    pub first: f64,
    pub last: f64,
    /// Seconds from the first to the last point; `None` when the profiles carry no usable times.
    pub span_seconds: Option<f64>,
    /// (last − first) / span.
    pub growth_per_second: Option<f64>,
    /// Least-squares slope of value against time.
    pub slope_per_second: Option<f64>,
    /// The fitted line's value at the first point's time (with `slope_per_second`, the line a
    /// plot draws).
    pub intercept: Option<f64>,
    /// Strictly increasing over at least three points.
    pub keeps_rising: bool,
}

/// Fits a trend to points given as (time in nanoseconds since the epoch, value), sorted by time.
pub fn fit(points: &[(i64, f64)]) -> Trend {
    let first = points.first().map_or(0.0, |p| p.1);
    let last = points.last().map_or(0.0, |p| p.1);
    let keeps_rising = points.len() >= 3 && points.windows(2).all(|w| w[1].1 > w[0].1);
    let t0 = points.first().map_or(0, |p| p.0);
    let seconds: Vec<f64> = points.iter().map(|p| (p.0 - t0) as f64 / 1e9).collect();
    let span = seconds.last().copied().filter(|&s| s > 0.0);
    let slope = span.and_then(|_| least_squares_slope(&seconds, points));
    // The least-squares line passes through the means of x and y.
    let intercept = slope.map(|slope| {
        let n = points.len() as f64;
        let mean_x = seconds.iter().sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        mean_y - slope * mean_x
    });
    Trend {
        points: points.len(),
        first,
        last,
        span_seconds: span,
        growth_per_second: span.map(|s| (last - first) / s),
        slope_per_second: slope,
        intercept,
        keeps_rising,
    }
}

fn least_squares_slope(xs: &[f64], points: &[(i64, f64)]) -> Option<f64> {
    let n = xs.len() as f64;
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, p) in xs.iter().zip(points) {
        sxy += (x - mean_x) * (p.1 - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn fits_a_noisy_line() {
        // y = 3t + 1 with ±0.5 noise that cancels out in the fit.
        let points = [
            (0, 1.5),
            (SECOND, 3.5),
            (2 * SECOND, 7.5),
            (3 * SECOND, 9.5),
        ];
        let t = fit(&points);
        let slope = t.slope_per_second.unwrap();
        assert!((slope - 2.8).abs() < 1e-9, "{slope}");
        // Mean (1.5, 5.5): 5.5 - 2.8 * 1.5.
        assert!(
            (t.intercept.unwrap() - 1.3).abs() < 1e-9,
            "{:?}",
            t.intercept
        );
        assert_eq!(t.growth_per_second, Some(8.0 / 3.0));
        assert!(t.keeps_rising);
        assert_eq!(t.span_seconds, Some(3.0));
    }

    #[test]
    fn flat_or_timeless_series() {
        let t = fit(&[(0, 5.0), (SECOND, 6.0), (2 * SECOND, 6.0)]);
        assert!(!t.keeps_rising, "a plateau is not rising");
        let t = fit(&[(7, 1.0), (7, 2.0), (7, 3.0)]);
        assert!(t.keeps_rising);
        assert_eq!(t.slope_per_second, None, "no time span, no rate");
        assert_eq!(t.growth_per_second, None);
        let t = fit(&[(0, 1.0), (SECOND, 9.0)]);
        assert!(!t.keeps_rising, "two points are not enough to keep rising");
        assert_eq!(t.slope_per_second, Some(8.0));
    }
}
