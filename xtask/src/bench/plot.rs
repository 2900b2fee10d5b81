//! SVG line plots of the growth series, drawn with `plotters` (its SVG backend writes text as
//! SVG text, so no fonts are needed).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::Serialize;

/// One series to plot: cost against size.
#[derive(Debug, Serialize)]
pub struct Plot {
    /// File name, e.g. `probe-depth.svg`.
    pub file: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// A logarithmic size axis, for sizes a hundred or thousand times apart.
    pub log_x: bool,
    /// (size, median cost), sizes increasing.
    pub points: Vec<(f64, f64)>,
}

impl Plot {
    pub fn draw(&self, path: &Path) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| anyhow!("bench: drawing {}: {e}", path.display());
        let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let (x_min, x_max) = (self.points[0].0, self.points[self.points.len() - 1].0);
        let y_max = self.points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.15;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&self.title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72);
        if self.log_x {
            let chart =
                builder.build_cartesian_2d((x_min * 0.8..x_max * 1.25).log_scale(), 0.0..y_max);
            self.draw_on(&mut chart.map_err(|e| fail(&e))?)
                .map_err(|e| fail(&e))?;
        } else {
            let margin = (x_max - x_min) * 0.05;
            let chart = builder.build_cartesian_2d(x_min - margin..x_max + margin, 0.0..y_max);
            self.draw_on(&mut chart.map_err(|e| fail(&e))?)
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))
    }

    /// The axes, the line and its points, on a linear or logarithmic size axis.
    fn draw_on<DB: DrawingBackend, X>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<X, RangedCoordf64>>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
    where
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .draw()?;
        chart.draw_series(LineSeries::new(
            self.points.iter().copied(),
            BLUE.stroke_width(2),
        ))?;
        chart.draw_series(
            self.points
                .iter()
                .map(|&p| Circle::new(p, 4, BLUE.filled())),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_their_labels() {
        let dir = std::env::temp_dir().join(format!("bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for log_x in [false, true] {
            let path = dir.join(format!("plot-{log_x}.svg"));
            Plot {
                file: "plot.svg".into(),
                title: "Cost against size".into(),
                x_label: "frames in the stack".into(),
                y_label: "µs added per event".into(),
                log_x,
                points: vec![(8.0, 1.5), (32.0, 1.9), (128.0, 3.2)],
            }
            .draw(&path)
            .unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(svg.starts_with("<svg"), "{svg}");
            for text in [
                "Cost against size",
                "frames in the stack",
                "µs added per event",
            ] {
                assert!(svg.contains(text), "no {text:?} in {svg}");
            }
            assert_eq!(svg.matches("<circle").count(), 3);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
