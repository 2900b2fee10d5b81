//! Numbers for people: values scaled to their unit.

/// A value in its unit, scaled for reading: bytes in KiB/MiB/GiB, nanoseconds in µs/ms/s.
pub fn human(value: f64, unit: &str) -> String {
    let scales: &[(f64, &str)] = match unit {
        "bytes" => &[
            (1024.0 * 1024.0 * 1024.0, "GiB"),
            (1024.0 * 1024.0, "MiB"),
            (1024.0, "KiB"),
        ],
        "nanoseconds" => &[(1e9, "s"), (1e6, "ms"), (1e3, "µs")],
        _ => &[],
    };
    for &(factor, name) in scales {
        if value.abs() >= factor {
            return format!("{:.2}{name}", value / factor);
        }
    }
    match unit {
        "bytes" => format!("{value:.0}B"),
        "nanoseconds" => format!("{value:.0}ns"),
        _ => format!("{value:.0}"),
    }
}
