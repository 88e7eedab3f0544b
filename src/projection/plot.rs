//! `compare --plot FILE.svg`: cost per 1M tokens against TPOT for every usable instance, the
//! Pareto frontier (no other instance both cheaper and faster) drawn as a line, and each
//! point's interval (TPOT and cost, see [`super::interval`]) as error bars.

use super::compare::{CompareReport, CompareRow};
use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;

/// One plotted instance.
#[derive(Debug, Clone, PartialEq)]
struct Dot {
    label: String,
    profile: String,
    tpot_ms: f64,
    cost: f64,
    /// Intervals `(low, high)` of TPOT and cost; the point itself where unknown.
    tpot_span: (f64, f64),
    cost_span: (f64, f64),
}

fn dots(rows: &[CompareRow]) -> Vec<Dot> {
    rows.iter()
        .filter(|r| r.projected.projection.fits)
        .filter_map(|r| {
            let p = &r.projected.projection;
            let cost = p.cost_usd_per_million_tokens?;
            let i = &p.intervals;
            (cost.is_finite() && cost > 0.0 && p.tpot_ms > 0.0).then(|| Dot {
                label: format!("{} (TP {}, b{})", p.instance, p.tp, p.batch),
                profile: p.profile.clone(),
                tpot_ms: p.tpot_ms,
                cost,
                tpot_span: (
                    i.tpot_ms_low.unwrap_or(p.tpot_ms),
                    i.tpot_ms_high.unwrap_or(p.tpot_ms),
                ),
                cost_span: i.cost().unwrap_or((cost, cost)),
            })
        })
        .collect()
}

/// Indices of the points not dominated by another (lower or equal TPOT and cost, one strictly),
/// sorted by TPOT.
fn pareto(d: &[Dot]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..d.len())
        .filter(|&i| {
            !d.iter().enumerate().any(|(j, o)| {
                j != i
                    && o.tpot_ms <= d[i].tpot_ms
                    && o.cost <= d[i].cost
                    && (o.tpot_ms < d[i].tpot_ms || o.cost < d[i].cost)
            })
        })
        .collect();
    idx.sort_by(|&a, &b| d[a].tpot_ms.total_cmp(&d[b].tpot_ms));
    idx
}

const LABEL_PX: i32 = 12;

/// Pixel box of a label of `text` whose top-left corner is at `at`.
fn label_box(text: &str, at: (i32, i32)) -> (i32, i32, i32, i32) {
    let w = text.chars().count() as i32 * LABEL_PX * 6 / 10;
    (at.0, at.1, at.0 + w, at.1 + LABEL_PX + 2)
}

fn overlaps(a: (i32, i32, i32, i32), b: (i32, i32, i32, i32)) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// Offsets (pixels from the point) for every label: right-below, right-above, left-below,
/// left-above, further below; the first whose box stays inside `area` (left, top, right,
/// bottom) and overlaps no placed label nor another point.
fn place_labels(d: &[Dot], anchors: &[(i32, i32)], area: (i32, i32, i32, i32)) -> Vec<(i32, i32)> {
    let inside =
        |b: (i32, i32, i32, i32)| b.0 >= area.0 && b.2 <= area.2 && b.1 >= area.1 && b.3 <= area.3;
    let mut placed: Vec<(i32, i32, i32, i32)> = anchors
        .iter()
        .map(|&(x, y)| (x - 6, y - 6, x + 6, y + 6))
        .collect();
    let mut out = Vec::with_capacity(d.len());
    for (p, &(x, y)) in d.iter().zip(anchors) {
        let w = p.label.chars().count() as i32 * LABEL_PX * 6 / 10;
        let tries = [
            (9, 2),
            (9, -LABEL_PX - 4),
            (-w - 9, 2),
            (-w - 9, -LABEL_PX - 4),
            (9, LABEL_PX + 4),
            (9, -2 * LABEL_PX - 6),
        ];
        let own = |o: (i32, i32)| label_box(&p.label, (x + o.0, y + o.1));
        let pick = tries
            .iter()
            .copied()
            .find(|&o| {
                let b = own(o);
                inside(b)
                    && placed
                        .iter()
                        .all(|q| !overlaps(b, *q) || (q.0 == x - 6 && q.1 == y - 6))
            })
            .unwrap_or(tries[0]);
        placed.push(own(pick));
        out.push(pick);
    }
    out
}

/// Renders the chart as SVG text.
pub fn plot_svg(report: &CompareReport) -> Result<String> {
    let d = dots(&report.rows);
    if d.is_empty() {
        bail!(
            "nothing to plot: no instance fits {} with a known price",
            report.model
        );
    }
    // The axes hold the error bars too.
    let (xmin, xmax) = d.iter().fold((f64::MAX, 0f64), |(a, b), p| {
        (a.min(p.tpot_span.0), b.max(p.tpot_span.1))
    });
    let (ymin, ymax) = d.iter().fold((f64::MAX, 0f64), |(a, b), p| {
        (a.min(p.cost_span.0), b.max(p.cost_span.1))
    });
    let x_range = (xmin * 0.8).max(0.0)..(xmax * 1.25);
    let y_range = (ymin / 1.3)..(ymax * 1.3);
    let profiles: Vec<String> = {
        let mut v: Vec<String> = d.iter().map(|p| p.profile.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 720)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| anyhow!("cannot draw the chart: {e}");
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let title = format!(
            "{}: cost per 1M tokens vs TPOT, projected with intervals (input {}, output {}, {})",
            report.model, report.input_len, report.output_len, report.weights_dtype
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d(x_range, y_range.log_scale())
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("TPOT, time per output token (ms)")
            .y_desc("Cost per 1M tokens (USD, log scale)")
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .y_label_formatter(&|v| format!("${v:.2}"))
            .draw()
            .map_err(|x| e(&x))?;
        let front = pareto(&d);
        chart
            .draw_series(LineSeries::new(
                front.iter().map(|&i| (d[i].tpot_ms, d[i].cost)),
                ShapeStyle::from(&BLACK.mix(0.5)).stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label("Pareto frontier")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5)));
        for (k, prof) in profiles.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let bar = ShapeStyle::from(&color.mix(0.6)).stroke_width(1);
            chart
                .draw_series(d.iter().filter(|p| &p.profile == prof).flat_map(|p| {
                    [
                        PathElement::new(
                            vec![(p.tpot_span.0, p.cost), (p.tpot_span.1, p.cost)],
                            bar,
                        ),
                        PathElement::new(
                            vec![(p.tpot_ms, p.cost_span.0), (p.tpot_ms, p.cost_span.1)],
                            bar,
                        ),
                    ]
                }))
                .map_err(|x| e(&x))?;
            chart
                .draw_series(
                    d.iter()
                        .filter(|p| &p.profile == prof)
                        .map(|p| Circle::new((p.tpot_ms, p.cost), 6, color.filled())),
                )
                .map_err(|x| e(&x))?
                .label(prof.as_str())
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled()));
        }
        // Labels beside their points, moved to the first free side so that they do not overlap.
        let anchors: Vec<(i32, i32)> = d
            .iter()
            .map(|p| chart.backend_coord(&(p.tpot_ms, p.cost)))
            .collect();
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        let offsets = place_labels(&d, &anchors, (xs.start, ys.start, xs.end, ys.end));
        chart
            .draw_series(d.iter().zip(&offsets).map(|(p, &off)| {
                EmptyElement::at((p.tpot_ms, p.cost))
                    + Text::new(p.label.clone(), off, ("sans-serif", LABEL_PX).into_font())
            }))
            .map_err(|x| e(&x))?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::card;
    use crate::projection::compare::{compare, CompareRequest};
    use crate::projection::dtype::WeightsDtype;
    use std::path::PathBuf;

    #[test]
    fn pareto_keeps_only_undominated_points() {
        let dot = |t: f64, c: f64| Dot {
            label: String::new(),
            profile: String::new(),
            tpot_ms: t,
            cost: c,
            tpot_span: (t, t),
            cost_span: (c, c),
        };
        let d = vec![
            dot(10.0, 5.0),
            dot(20.0, 2.0),
            dot(15.0, 6.0),
            dot(30.0, 2.0),
        ];
        assert_eq!(pareto(&d), vec![0, 1]);
    }

    #[test]
    fn labels_of_close_points_do_not_overlap() {
        let dot = |l: &str| Dot {
            label: l.into(),
            profile: String::new(),
            tpot_ms: 0.0,
            cost: 0.0,
            tpot_span: (0.0, 0.0),
            cost_span: (0.0, 0.0),
        };
        let d = vec![
            dot("p5.48xlarge (TP 8, b1)"),
            dot("p5en.48xlarge (TP 8, b1)"),
        ];
        let off = place_labels(&d, &[(100, 100), (104, 101)], (0, 0, 1000, 1000));
        let a = label_box(&d[0].label, (100 + off[0].0, 100 + off[0].1));
        let b = label_box(&d[1].label, (104 + off[1].0, 101 + off[1].1));
        assert!(!overlaps(a, b), "{off:?}");
        // A point at the left edge keeps its label inside the area.
        let off = place_labels(&d[..1], &[(5, 100)], (0, 0, 1000, 1000));
        assert!(off[0].0 > 0, "{off:?}");
    }

    fn plotted(r: &CompareReport) -> usize {
        dots(&r.rows).len()
    }

    #[test]
    fn svg_has_axes_units_and_labels() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let c = card::find(&root.join("models"), "llama-3.1-8b").unwrap();
        let r = compare(
            &root.join("profiles"),
            &c,
            "inf2-profile,h100-profile",
            &CompareRequest::new(256, 256, WeightsDtype::Bf16),
        )
        .unwrap();
        let svg = plot_svg(&r).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("TPOT, time per output token (ms)"));
        assert!(svg.contains("Cost per 1M tokens (USD, log scale)"));
        assert!(svg.contains("inf2.48xlarge (TP 24, b1)"));
        assert!(svg.contains("Pareto frontier"));
        // Error bars: two segments per point, from the interval's low to its high end.
        let segments = svg.matches("<polyline").count();
        assert!(segments > 2 * plotted(&r), "{segments}");
    }
}
