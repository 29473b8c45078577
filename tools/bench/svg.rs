//! The latency histogram as a standalone SVG: bars over a log-scale latency
//! axis, the percentiles marked, the workload and results in the title.
//! Written by hand (no plotting library): a fixed-size canvas and a few
//! dozen elements.

use crate::report::{format_ms, Summary, PERCENTILES};
use std::fmt::Write;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 30.0;
const MARGIN_TOP: f64 = 140.0;
const MARGIN_BOTTOM: f64 = 60.0;

/// Bars per factor of ten: each bar spans 12 %, wider than the histogram's
/// 0.8 % buckets, so the shape reads at a glance.
const BARS_PER_DECADE: f64 = 20.0;

/// Pixels of the shortest non-empty bar.
const BAR_HEIGHT_MIN: f64 = 2.0;

/// Where the plot area maps latencies (µs, log scale) and shares (%).
struct Axes {
    decade_min: f64,
    decade_max: f64,
    share_max: f64,
}

impl Axes {
    fn x(&self, microseconds: f64) -> f64 {
        let fraction =
            (microseconds.max(1.0).log10() - self.decade_min) / (self.decade_max - self.decade_min);
        MARGIN_LEFT + fraction.clamp(0.0, 1.0) * (WIDTH - MARGIN_LEFT - MARGIN_RIGHT)
    }

    fn y(&self, share: f64) -> f64 {
        let fraction = (share / self.share_max).clamp(0.0, 1.0);
        HEIGHT - MARGIN_BOTTOM - fraction * (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)
    }
}

pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    write_title(&mut out, summary);
    let bars = bars(summary);
    if bars.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no successful operations</text>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    } else {
        let axes = axes(summary, &bars);
        write_axes(&mut out, &axes);
        write_bars(&mut out, &axes, &bars);
        write_markers(&mut out, &axes, summary);
    }
    out.push_str("</svg>\n");
    out
}

fn write_title(out: &mut String, summary: &Summary) {
    let stats = &summary.stats;
    let mut percentiles = String::new();
    for (label, quantile) in PERCENTILES {
        let _ = write!(
            percentiles,
            "{label} {} ms, ",
            format_ms(summary.quantile_ms(quantile))
        );
    }
    let lines = [
        format!("raftlite bench: {}", summary.workload_line()),
        format!(
            "{:.0} ops/s over {:.1} s; {} ok, {} failed, {} errors",
            summary.operations_per_second(),
            summary.measured_seconds,
            stats.operations_succeeded,
            stats.operations_failed,
            stats.errors_total()
        ),
        format!("{percentiles}max {} ms", format_ms(summary.max_ms())),
    ];
    for (number, line) in lines.iter().enumerate() {
        let (size, weight) = if number == 0 {
            (16, "bold")
        } else {
            (13, "normal")
        };
        let _ = writeln!(
            out,
            "<text x=\"{MARGIN_LEFT}\" y=\"{}\" font-size=\"{size}\" font-weight=\"{weight}\">{}</text>",
            24 + 20 * number,
            escape(line)
        );
    }
}

/// One bar: `number` n covers latencies from 10^(n/20) to 10^((n+1)/20) µs.
struct Bar {
    number: i64,
    count: u64,
    /// Share of successful operations, in %.
    share: f64,
}

fn bars(summary: &Summary) -> Vec<Bar> {
    let histogram = &summary.stats.histogram;
    let total = histogram.count() as f64;
    let mut bars: Vec<Bar> = Vec::new();
    for (lowest, highest, count) in histogram.buckets() {
        let middle = ((lowest + highest) as f64 / 2.0).max(1.0);
        let number = (middle.log10() * BARS_PER_DECADE).floor() as i64;
        match bars.last_mut() {
            Some(bar) if bar.number == number => bar.count += count,
            _ => bars.push(Bar {
                number,
                count,
                share: 0.0,
            }),
        }
    }
    for bar in &mut bars {
        bar.share = bar.count as f64 / total * 100.0;
    }
    bars
}

fn axes(summary: &Summary, bars: &[Bar]) -> Axes {
    let first = bars.first().map_or(0, |bar| bar.number) as f64 / BARS_PER_DECADE;
    let last = bars.last().map_or(0, |bar| bar.number + 1) as f64 / BARS_PER_DECADE;
    let max_log = summary
        .stats
        .histogram
        .max_microseconds()
        .map_or(last, |max| (max.max(1) as f64).log10());
    let decade_min = first.floor();
    let mut decade_max = last.max(max_log).ceil();
    if decade_max <= decade_min {
        decade_max = decade_min + 1.0;
    }
    let share_peak = bars.iter().map(|bar| bar.share).fold(0.0, f64::max);
    Axes {
        decade_min,
        decade_max,
        share_max: nice_ceiling(share_peak),
    }
}

/// The smallest round number (1, 1.5, 2, 3, 4, 5, 6 or 8 times a power of
/// ten) at or above `value`: the tallest bar fills most of the height.
fn nice_ceiling(value: f64) -> f64 {
    let power = 10f64.powf(value.max(1e-9).log10().floor());
    [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|step| step * power)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * power)
}

fn write_axes(out: &mut String, axes: &Axes) {
    let (left, right) = (MARGIN_LEFT, WIDTH - MARGIN_RIGHT);
    let (top, bottom) = (MARGIN_TOP, HEIGHT - MARGIN_BOTTOM);
    let _ = writeln!(
        out,
        "<g stroke=\"#444\" fill=\"none\"><path d=\"M{left},{top} V{bottom} H{right}\"/></g>"
    );
    for step in 0..=4 {
        let share = axes.share_max * f64::from(step) / 4.0;
        let y = axes.y(share);
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}%</text>",
            left - 6.0,
            y + 4.0,
            round_label(share, 2)
        );
    }
    let mut decade = axes.decade_min;
    while decade <= axes.decade_max {
        for factor in [1.0, 2.0, 5.0] {
            let microseconds = 10f64.powf(decade) * factor;
            if microseconds.log10() > axes.decade_max + 1e-9 {
                break;
            }
            let x = axes.x(microseconds);
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{bottom}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#444\"/>\
                 <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                bottom + if factor == 1.0 { 6.0 } else { 3.0 },
                bottom + 20.0,
                tick_label(microseconds / 1000.0)
            );
        }
        decade += 1.0;
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">latency (ms, log scale)</text>",
        (left + right) / 2.0,
        HEIGHT - 18.0
    );
    let _ = writeln!(
        out,
        "<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">share of successful operations (%)</text>",
        (top + bottom) / 2.0
    );
}

fn tick_label(milliseconds: f64) -> String {
    round_label(milliseconds, 3)
}

/// `value` with at most `decimals` places and no trailing zeros.
fn round_label(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if !text.contains('.') {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn write_bars(out: &mut String, axes: &Axes, bars: &[Bar]) {
    let _ = writeln!(out, "<g fill=\"#4a7ab5\">");
    for Bar {
        number,
        count,
        share,
    } in bars
    {
        let from = axes.x(10f64.powf(*number as f64 / BARS_PER_DECADE));
        let to = axes.x(10f64.powf((*number + 1) as f64 / BARS_PER_DECADE));
        // Every non-empty bar stays visible: a failover tail of a few dozen
        // operations among a million is the point of the picture.
        let top = axes.y(*share).min(HEIGHT - MARGIN_BOTTOM - BAR_HEIGHT_MIN);
        let _ = writeln!(
            out,
            "<rect class=\"bar\" x=\"{from:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{} operations ({share:.4}%)</title></rect>",
            (to - from - 0.5).max(0.5),
            HEIGHT - MARGIN_BOTTOM - top,
            count
        );
    }
    let _ = writeln!(out, "</g>");
}

/// Dashed lines at p50, p90, p99, p99.9 and max, labels staggered so that
/// close percentiles stay readable.
fn write_markers(out: &mut String, axes: &Axes, summary: &Summary) {
    let mut markers: Vec<(&str, Option<f64>)> = PERCENTILES
        .iter()
        .map(|(label, quantile)| (*label, summary.quantile_ms(*quantile)))
        .collect();
    markers.push(("max", summary.max_ms()));
    for (number, (label, milliseconds)) in markers.iter().enumerate() {
        let Some(milliseconds) = milliseconds else {
            continue;
        };
        let x = axes.x(milliseconds * 1000.0);
        let label_y = MARGIN_TOP - 60.0 + 12.0 * number as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{label_y:.1}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#c0392b\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{:.1}\" y=\"{label_y:.1}\" fill=\"#c0392b\" font-size=\"11\">{label} {}</text>",
            HEIGHT - MARGIN_BOTTOM,
            x + 3.0,
            format_ms(Some(*milliseconds))
        );
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
    use crate::report::tests::sample_summary;

    #[test]
    fn svg_has_bars_axes_title_and_percentile_markers() {
        let latencies: Vec<u64> = (1..=200).collect();
        let svg = render(&sample_summary(&latencies));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert!(svg.contains("raftlite bench: 64 clients, closed loop, 50% GET"));
        assert!(svg.contains("latency (ms, log scale)"));
        assert!(svg.contains(">p50 "), "p50 marker");
        assert!(svg.contains(">p99.9 "), "p99.9 marker");
        assert!(svg.contains(">max 200.000<"), "max marker");
        let bars = svg.matches("class=\"bar\"").count();
        assert!((20..=60).contains(&bars), "{bars} bars");
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }

    #[test]
    fn svg_without_successes_says_so() {
        let svg = render(&sample_summary(&[]));
        assert!(svg.contains("no successful operations"));
        assert!(!svg.contains("class=\"bar\""));
    }

    #[test]
    fn helpers_round_and_escape() {
        assert_eq!(nice_ceiling(3.2), 4.0);
        assert_eq!(nice_ceiling(24.8), 30.0);
        assert!((nice_ceiling(0.7) - 0.8).abs() < 1e-12);
        assert_eq!(nice_ceiling(12.0), 15.0);
        assert_eq!(tick_label(0.001), "0.001");
        assert_eq!(tick_label(20.0), "20");
        assert_eq!(round_label(1.25, 2), "1.25");
        assert_eq!(round_label(100.0, 0), "100");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
