//! `--plot FILE.svg`: the per-packet figures as horizontal bars of ns over the empty
//! program, each path's target drawn as a red mark, bars green when the target is met,
//! orange when missed, grey without a target (plotters, SVG backend).

use super::figure::Figure;
use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::path::Path;

const MET: RGBColor = RGBColor(46, 139, 87);
const MISSED: RGBColor = RGBColor(230, 126, 34);
const NO_TARGET: RGBColor = RGBColor(150, 150, 150);
const TARGET: RGBColor = RGBColor(200, 30, 30);

/// Draws the chart; false (and no file) when there is no per-packet figure.
pub fn draw(path: &Path, figures: &[Figure], machine: &serde_json::Value) -> Result<bool> {
    // Bottom to top in the chart, so the table's first figure ends up on top.
    let bars: Vec<&Figure> = figures
        .iter()
        .filter(|f| f.unit == "ns/pkt" && f.name != "pass_empty" && f.failed.is_none())
        .filter(|f| f.extra_over_pass.is_some_and(f64::is_finite))
        .rev()
        .collect();
    if bars.is_empty() {
        return Ok(false);
    }
    let n = bars.len() as i32;
    let vmax = bars
        .iter()
        .flat_map(|f| [f.judged(), f.target.unwrap_or(0.0)])
        .fold(0.0f64, f64::max)
        * 1.15;
    let height = 120 + 26 * bars.len() as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "lb per-packet cost over an empty XDP program (ns; red: target) — {}, {} cores, kernel {}",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["kernel"].as_str().unwrap_or("?")
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(250)
        .build_cartesian_2d(0f64..vmax, (0..n).into_segmented())
        .map_err(|e| err(&e))?;
    let names: Vec<String> = bars.iter().map(|f| f.name.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(*i as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .x_desc("extra ns per packet over pass_empty (BPF_PROG_TEST_RUN, median of runs)")
        .draw()
        .map_err(|e| err(&e))?;
    let at = |i: i32| SegmentValue::Exact(i);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, f)| {
            let color = match f.met() {
                Some(true) => MET,
                Some(false) => MISSED,
                None => NO_TARGET,
            };
            let mut r = Rectangle::new(
                [(0.0, at(i as i32)), (f.judged().max(0.0), at(i as i32 + 1))],
                color.filled(),
            );
            r.set_margin(4, 4, 0, 0);
            r
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().filter_map(|(i, f)| {
            let t = f.target?;
            Some(PathElement::new(
                vec![(t, at(i as i32)), (t, at(i as i32 + 1))],
                TARGET.stroke_width(3),
            ))
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, f)| {
            Text::new(
                format!(" {:.0}", f.judged()),
                (f.judged().max(0.0), SegmentValue::CenterOf(i as i32)),
                ("sans-serif", 12),
            )
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(true)
}
