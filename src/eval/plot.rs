//! The cost–accuracy curve as SVG: the policy's operating curve, its own
//! operating point, and the baselines marked.

use super::Evaluation;
use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;

/// Writes the plot of `ev` to `path`.
pub fn write(path: &Path, ev: &Evaluation, title: &str) -> anyhow::Result<()> {
    let strong = ev.always_strong_cost_usd.max(f64::MIN_POSITIVE);
    let ratio = |c: f64| c / strong;
    let max_x = ev.curve.iter().map(|p| ratio(p.cost_usd)).fold(1.05f64, f64::max) * 1.02;
    let accs = ev
        .curve
        .iter()
        .map(|p| p.accuracy)
        .chain(ev.baselines.values().map(|b| b.accuracy));
    let (lo, hi) = accs.fold((1.0f64, 0.0f64), |(l, h), a| (l.min(a), h.max(a)));
    let (lo, hi) = ((lo - 0.03).max(0.0), (hi + 0.03).min(1.0));
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (800, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("upshift: accuracy vs cost — {title}"), ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..max_x, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("cost / always-strong cost")
            .y_desc("accuracy")
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()?;
        let curve: Vec<(f64, f64)> = ev.curve.iter().map(|p| (ratio(p.cost_usd), p.accuracy)).collect();
        chart
            .draw_series(LineSeries::new(curve, BLUE.stroke_width(2)))?
            .label("policy operating curve")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        let marks = [
            ("always_weak", RED),
            ("always_strong", BLACK),
            ("random", MAGENTA),
            ("oracle", GREEN),
        ];
        for (name, colour) in marks {
            if let Some(b) = ev.baselines.get(name) {
                let at = (ratio(b.cost_usd), b.accuracy);
                chart
                    .draw_series(std::iter::once(Circle::new(at, 6, colour.filled())))?
                    .label(name.replace('_', "-"))
                    .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
            }
        }
        let me = (ev.cost_ratio, ev.accuracy);
        chart
            .draw_series(std::iter::once(TriangleMarker::new(me, 9, BLUE.filled())))?
            .label("this policy")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, BLUE.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("writing {}", path.display()))
}
