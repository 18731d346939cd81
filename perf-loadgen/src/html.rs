//! A self-contained HTML report: figures, verdicts and inline SVG charts
//! drawn here (no script, no network fetch when it is viewed).

use std::fmt::Write;

use crate::{Comparison, RunReport, Verdict};

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 40.0;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step for about `target` ticks over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Most points per series that get a hover tooltip each.
const MAX_HOVER_POINTS: usize = 1200;

/// A value for a tooltip: three significant digits.
fn fmt_value(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - perf_core::num::saturating_i32(v.abs().log10().floor())).clamp(0, 9) as usize;
    format!("{v:.digits$}")
}

/// One line of a chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// A line chart as inline SVG. `x_labels` maps an x value to its tick label.
fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    x_labels: &dyn Fn(f64) -> String,
) -> String {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in all {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        if y.is_finite() {
            y_max = y_max.max(y);
        }
    }
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(title)
    );
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="18" font-size="14" font-weight="600" fill="#222">{}</text>"##,
        esc(title)
    );
    if x_min > x_max {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" fill="#888">no data</text></svg></figure>"##,
            WIDTH / 2.0 - 30.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    if (x_max - x_min).abs() < f64::EPSILON {
        x_max = x_min + 1.0;
    }
    let y_step = nice_step(y_max.max(1e-9), 5.0);
    let y_top = (y_max / y_step).ceil().max(1.0) * y_step;
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * pw;
    let sy = |y: f64| TOP + ph - (y / y_top).clamp(0.0, 1.0) * ph;
    // Grid and y ticks.
    let mut y = 0.0;
    while y <= y_top + y_step * 0.01 {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{}</text>"##,
            WIDTH - RIGHT,
            sy(y),
            sy(y),
            LEFT - 6.0,
            sy(y) + 4.0,
            fmt_tick(y)
        );
        y += y_step;
    }
    // x ticks.
    let x_step = nice_step(x_max - x_min, 8.0);
    let mut x = (x_min / x_step).ceil() * x_step;
    while x <= x_max + x_step * 0.01 {
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{}" y2="{}" stroke="#999"/><text x="{:.1}" y="{}" font-size="11" text-anchor="middle" fill="#555">{}</text>"##,
            sx(x),
            sx(x),
            TOP + ph,
            TOP + ph + 4.0,
            sx(x),
            TOP + ph + 16.0,
            esc(&x_labels(x))
        );
        x += x_step;
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{}" stroke="#999"/><line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#999"/>"##,
        TOP + ph,
        WIDTH - RIGHT,
        TOP + ph,
        TOP + ph
    );
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#555">{}</text>"##,
        LEFT + pw / 2.0,
        HEIGHT - 6.0,
        esc(x_label)
    );
    let _ = write!(
        svg,
        r##"<text x="14" y="{}" font-size="11" text-anchor="middle" fill="#555" transform="rotate(-90 14 {})">{}</text>"##,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(y_label)
    );
    // Lines and legend.
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(_, y)| y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if points.len() == 1 {
            let _ = write!(
                svg,
                r#"<circle cx="{}" r="3" fill="{}"/>"#,
                points[0].replace(',', r#"" cy=""#),
                s.color
            );
        } else {
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.6" points="{}"/>"#,
                s.color,
                points.join(" ")
            );
        }
        // The legend sits above the plot, never over its lines.
        let lx = LEFT + i as f64 * 150.0;
        let _ = write!(
            svg,
            r##"<rect x="{lx}" y="{}" width="12" height="3" fill="{}"/><text x="{}" y="{}" font-size="11" fill="#333">{}</text>"##,
            TOP - 14.0,
            s.color,
            lx + 16.0,
            TOP - 10.0,
            esc(s.name)
        );
        // Values on hover: each point carries its value as a tooltip (for
        // charts of a readable size; a long run's lines stay light).
        if s.points.len() <= MAX_HOVER_POINTS {
            for &(x, y) in s.points.iter().filter(|(_, y)| y.is_finite()) {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="transparent"><title>{}: {} at {}</title></circle>"#,
                    sx(x),
                    sy(y),
                    esc(s.name),
                    fmt_value(y),
                    esc(&x_labels(x))
                );
            }
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The spectrum's x axis is in "nines" (1 = p90, 2 = p99...): a label for
/// every tick, each different (p50 at 0.3, p75 at 0.6, p97 at 1.5...).
fn percentile_label(nines: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-nines));
    let text = if q < 99.0 {
        format!("p{q:.0}")
    } else {
        // As many decimals as the nines need: p99.9, p99.99.
        let decimals = perf_core::num::saturating_usize((nines - 2.0).ceil().max(0.0));
        format!("p{q:.decimals$}")
    };
    text.trim_end_matches(".0").to_owned()
}

fn seconds(x: f64) -> String {
    let s = perf_core::num::saturating_u64(x.round());
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl RunReport {
    /// The report as one self-contained HTML page (inline CSS and SVG charts):
    /// throughput and errors, latency percentiles over time, users and
    /// requests in flight, the latency distribution, thresholds and, when
    /// given, the regression verdicts.
    pub fn to_html(&self, comparison: Option<&Comparison>) -> String {
        let t = &self.timeline;
        // The last row of a run that ended mid-second covers a fraction of a
        // second: drawn, it would look like a collapse to zero at the end.
        let whole =
            |r: &&crate::TimelineRow| t.len() < 2 || r.t_s as f64 + 1.0 <= self.duration_s + 0.05;
        let at = |f: &dyn Fn(&crate::TimelineRow) -> f64| -> Vec<(f64, f64)> {
            t.iter()
                .filter(whole)
                .map(|r| (r.t_s as f64, f(r)))
                .collect()
        };
        let throughput = line_chart(
            "Throughput and errors",
            "time since start",
            "requests per second",
            &[
                Series {
                    name: "completed / s",
                    color: "#1f77b4",
                    points: at(&|r| r.rps),
                },
                Series {
                    name: "errors / s",
                    color: "#d62728",
                    points: at(&|r| r.errors as f64 / r.span_s.max(1) as f64),
                },
            ],
            &seconds,
        );
        let latency = line_chart(
            "Latency over time (corrected)",
            "time since start",
            "milliseconds",
            &[
                Series {
                    name: "p50",
                    color: "#2ca02c",
                    points: at(&|r| r.p50_ms),
                },
                Series {
                    name: "p95",
                    color: "#ff7f0e",
                    points: at(&|r| r.p95_ms),
                },
                Series {
                    name: "p99",
                    color: "#d62728",
                    points: at(&|r| r.p99_ms),
                },
            ],
            &seconds,
        );
        let load = line_chart(
            "Users and requests in flight",
            "time since start",
            "count",
            &[
                Series {
                    name: "virtual users",
                    color: "#9467bd",
                    points: at(&|r| r.users as f64),
                },
                Series {
                    name: "in flight",
                    color: "#8c564b",
                    points: at(&|r| r.in_flight as f64),
                },
                Series {
                    name: "dropped / s",
                    color: "#7f7f7f",
                    points: at(&|r| r.dropped as f64 / r.span_s.max(1) as f64),
                },
            ],
            &seconds,
        );
        // Percentile spectrum: x in "nines" (0 = p0, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99).
        let spectrum = |h: &perf_core::LatencyHistogram| -> Vec<(f64, f64)> {
            (0..=80)
                .map(|i| {
                    let nines = f64::from(i) / 20.0;
                    let q = 100.0 * (1.0 - 10f64.powf(-nines));
                    (nines, h.percentile(q).as_secs_f64() * 1000.0)
                })
                .collect()
        };
        let mut dist_series = vec![Series {
            name: "corrected",
            color: "#1f77b4",
            points: spectrum(&self.histograms.latency),
        }];
        if self.model == "open" {
            dist_series.push(Series {
                name: "uncorrected",
                color: "#bcbd22",
                points: spectrum(&self.histograms.latency_uncorrected),
            });
        }
        let distribution = line_chart(
            "Latency distribution (percentile spectrum)",
            "percentile",
            "milliseconds",
            &dist_series,
            &percentile_label,
        );

        let mut h = String::new();
        let verdict = if self.passed {
            r#"<span class="pass">PASSED</span>"#
        } else {
            r#"<span class="fail">FAILED</span>"#
        };
        let _ = write!(
            h,
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Load test {name}</title><style>
body{{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:900px;color:#222}}
h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}}
table{{border-collapse:collapse;margin:6px 0}} td,th{{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}} th:first-child,td:first-child{{text-align:left}}
.pass{{background:#e3f5e1;color:#19692c;padding:2px 8px;border-radius:4px;font-weight:600}} .fail{{background:#fde2e1;color:#a11;padding:2px 8px;border-radius:4px;font-weight:600}} .warn{{background:#fff4d6;color:#7a5200;padding:2px 8px;border-radius:4px;font-weight:600}}
.muted{{color:#666}} figure{{margin:8px 0}}
</style></head><body>"#,
            name = esc(&self.scenario)
        );
        let _ = write!(
            h,
            r#"<h1>Load test <code>{}</code> {verdict}</h1><p class="muted">{} model against {} &middot; started {} &middot; {:.1} s{}</p>"#,
            esc(&self.scenario),
            esc(&self.model),
            esc(&self.targets.join(", ")),
            esc(&self.started_at),
            self.duration_s,
            self.stopped_early
                .as_ref()
                .map(|r| format!(" &middot; stopped early: {}", esc(&r.to_string())))
                .unwrap_or_default()
        );
        if let Some(reason) = &self.no_success {
            let _ = write!(
                h,
                r#"<p class="fail"><strong>Nothing to judge: {}</strong></p>"#,
                esc(reason)
            );
        }
        if let Some(why) = &self.generator.reason {
            let _ = write!(
                h,
                r#"<p class="fail"><strong>generator_bound: the load generator was the bottleneck ({}); the figures understate the server.</strong></p>"#,
                esc(why)
            );
        }
        if self.interrupted {
            let _ = write!(
                h,
                r#"<p class="fail"><strong>Interrupted: the figures cover only part of the plan.</strong></p>"#
            );
        }
        for warning in &self.warnings {
            let _ = write!(
                h,
                r#"<p class="fail"><strong>Warning: {}</strong></p>"#,
                esc(warning)
            );
        }
        let _ = write!(
            h,
            "<h2>Summary</h2><table><tr><td>requests</td><td>{}</td></tr><tr><td>throughput</td><td>{:.1} req/s</td></tr><tr><td>errors</td><td>{} ({:.3} %)</td></tr><tr><td>dropped</td><td>{}</td></tr><tr><td>bytes sent / received</td><td>{} / {} bytes</td></tr></table>",
            self.requests,
            self.rps,
            self.errors,
            self.error_rate * 100.0,
            self.dropped,
            self.bytes_sent,
            self.bytes_received
        );
        let share = |n: u64| {
            if self.requests > 0 {
                n as f64 / self.requests as f64 * 100.0
            } else {
                0.0
            }
        };
        if !self.status_codes.is_empty() {
            h.push_str(
                "<h2>Status codes</h2><table><tr><th>status</th><th>responses</th><th>share</th></tr>",
            );
            for (code, n) in &self.status_codes {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{n}</td><td>{:.2} %</td></tr>",
                    esc(code),
                    share(*n)
                );
            }
            h.push_str("</table>");
        }
        // Errors by kind: the transport's kinds, and each error status.
        let kinds: Vec<(String, u64)> = self
            .errors_by_cause()
            .map(|(cause, n)| match cause {
                crate::ErrorCause::Transport(kind) => (kind.to_owned(), n),
                crate::ErrorCause::Status(code) => (format!("HTTP {code}"), n),
            })
            .collect();
        if !kinds.is_empty() {
            h.push_str("<h2>Errors by kind</h2><table><tr><th>kind</th><th>requests</th><th>share</th></tr>");
            for (kind, n) in &kinds {
                let _ = write!(
                    h,
                    r#"<tr><td>{}</td><td class="fail">{n}</td><td>{:.2} %</td></tr>"#,
                    esc(kind),
                    share(*n)
                );
            }
            h.push_str("</table>");
        }
        h.push_str("<h2>Requests</h2><table><tr><th>request</th><th>requests</th><th>errors</th><th>error rate</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>");
        for (name, r) in &self.per_request {
            let rate = if r.requests > 0 {
                r.errors as f64 / r.requests as f64 * 100.0
            } else {
                0.0
            };
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td>{}</td><td{}>{}</td><td>{rate:.2} %</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>"#,
                esc(name),
                r.requests,
                if r.errors > 0 { r#" class="fail""# } else { "" },
                r.errors,
                r.latency_ms.p50,
                r.latency_ms.p95,
                r.latency_ms.p99
            );
        }
        h.push_str("</table>");
        h.push_str("<h2>Latency (ms)</h2><table><tr><th></th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>");
        let mut row = |label: &str, l: &crate::LatencyMs| {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                esc(label),
                l.p50,
                l.p90,
                l.p95,
                l.p99,
                l.p999,
                l.max,
                l.mean
            );
        };
        row(
            if self.model == "open" {
                "all, from intended time"
            } else {
                "all, service time"
            },
            &self.latency_ms,
        );
        if let Some(u) = &self.latency_uncorrected_ms {
            row("all, from actual send", u);
        }
        for (name, r) in &self.per_request {
            row(name, &r.latency_ms);
        }
        let p = &self.phases;
        for (label, figures) in [
            ("phase: time to first byte", &p.ttfb_ms),
            ("phase: TCP connect", &p.connect_ms),
            ("phase: TLS handshake", &p.tls_handshake_ms),
            (
                "failed connects (not in the figures above)",
                &p.connect_failed_ms,
            ),
        ] {
            if let Some(l) = figures {
                row(label, l);
            }
        }
        h.push_str("</table>");
        let _ = write!(
            h,
            r#"<p class="muted">{} &middot; {} connections opened, {} failed{}</p>"#,
            esc(&self.protocol),
            p.connections_opened,
            p.connect_failures,
            self.tls
                .as_ref()
                .map(|t| format!(
                    " &middot; TLS: {} handshakes, {} resumed (resumption {}), certificates {}",
                    p.tls_handshakes,
                    p.tls_resumed,
                    if t.session_resumption { "on" } else { "off" },
                    if t.insecure_skip_verify {
                        "NOT verified"
                    } else {
                        "verified"
                    }
                ))
                .unwrap_or_default()
        );
        if !self.checks.is_empty() {
            h.push_str("<h2>Checks</h2><table><tr><th>check</th><th>passed</th><th>failed</th><th>pass rate</th></tr>");
            for (label, c) in &self.checks {
                let _ = write!(
                    h,
                    r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="{}">{:.2} %</td></tr>"#,
                    esc(label),
                    c.passes,
                    c.fails,
                    if c.fails == 0 { "pass" } else { "fail" },
                    c.pass_rate * 100.0
                );
            }
            h.push_str("</table>");
            for (name, f) in &self.flows {
                let _ = write!(
                    h,
                    r#"<p class="muted">flow {}: {} iterations, {} aborted after a failed check</p>"#,
                    esc(name),
                    f.iterations,
                    f.aborted
                );
            }
        }
        if !self.thresholds.is_empty() {
            h.push_str(
                "<h2>Thresholds</h2><table><tr><th>rule</th><th>observed</th><th>verdict</th></tr>",
            );
            for t in &self.thresholds {
                let v = if t.passed {
                    r#"<span class="pass">pass</span>"#
                } else {
                    r#"<span class="fail">fail</span>"#
                };
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{v}</td></tr>",
                    esc(&t.expr),
                    esc(&t.observed_with_unit())
                );
            }
            h.push_str("</table>");
        }
        if let Some(c) = comparison {
            let _ = write!(
                h,
                "<h2>Against the baseline</h2><p>Against a {}, at a false-positive rate of {} over all metrics together.</p><table><tr><th>metric</th><th>baseline</th><th>this run</th><th>change</th><th>interval</th><th>band</th><th>run-to-run noise</th><th>confidence</th><th>verdict</th><th>why</th></tr>",
                esc(&c.against),
                c.false_positive_rate
            );
            for m in &c.metrics {
                let v = match m.verdict {
                    Verdict::Regressed => r#"<span class="fail">regressed</span>"#,
                    Verdict::Improved => r#"<span class="pass">improved</span>"#,
                    Verdict::Unchanged => "unchanged",
                    Verdict::Inconclusive => r#"<span class="warn">inconclusive</span>"#,
                };
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:+.1} %</td><td>{:+.1} % to {:+.1} %</td><td>&plusmn;{:.1} %</td><td>&plusmn;{:.1} %</td><td>{:.3}</td><td>{v}</td><td>{}</td></tr>",
                    esc(&m.metric),
                    m.baseline,
                    m.current,
                    m.change_percent,
                    m.change_low_percent,
                    m.change_high_percent,
                    m.noise_band_percent,
                    m.run_noise_percent,
                    m.confidence,
                    esc(&m.reason)
                );
            }
            h.push_str("</table>");
        }
        h.push_str("<h2>Charts</h2>");
        for chart in [throughput, latency, load, distribution] {
            h.push_str(&chart);
        }
        h.push_str(r#"<p class="muted">Generated by perf-loadgen. Latency is counted from the intended send time (corrected for coordinated omission).</p></body></html>"#);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 1.0);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
        assert_eq!(fmt_tick(25_000.0), "25k");
        assert_eq!(seconds(125.0), "2m05s");
    }

    #[test]
    fn an_empty_chart_says_so_and_text_is_escaped() {
        let svg = line_chart(
            "<b>",
            "x",
            "y",
            &[Series {
                name: "a&b",
                color: "#000",
                points: vec![],
            }],
            &seconds,
        );
        assert!(svg.contains("no data") && svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        let svg = line_chart(
            "t",
            "x",
            "y",
            &[Series {
                name: "a&b",
                color: "#000",
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
            &seconds,
        );
        assert!(svg.contains("<polyline") && svg.contains("a&amp;b"));
    }

    #[test]
    fn percentile_ticks_are_distinct() {
        let labels: Vec<String> = (0..=8)
            .map(|i| percentile_label(f64::from(i) * 0.5))
            .collect();
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(labels.len(), unique.len(), "{labels:?}");
        assert_eq!(percentile_label(1.0), "p90");
        assert_eq!(percentile_label(3.0), "p99.9");
        assert_eq!(percentile_label(4.0), "p99.99");
    }

    #[test]
    fn tables_hover_values_and_no_partial_last_second() {
        let mut report = RunReport {
            scenario: "s".into(),
            duration_s: 3.01,
            requests: 300,
            errors: 3,
            ..RunReport::default()
        };
        report.status_codes.insert("200".into(), 297);
        report.status_codes.insert("503".into(), 3);
        report.error_kinds.insert("timeout".into(), 1);
        for t in 0..4u64 {
            report.timeline.push(crate::TimelineRow {
                t_s: t,
                span_s: 1,
                requests: if t == 3 { 1 } else { 100 },
                rps: if t == 3 { 1.0 } else { 100.0 },
                ..crate::TimelineRow::default()
            });
        }
        let html = report.to_html(None);
        assert!(
            html.contains("<h2>Status codes</h2>") && html.contains("<td>503</td><td>3</td>"),
            "{html}"
        );
        assert!(
            html.contains("<h2>Errors by kind</h2>") && html.contains("<td>HTTP 503</td>"),
            "{html}"
        );
        assert!(
            html.contains("<title>completed / s: 100 at 2s</title>"),
            "{html}"
        );
        // The last row covers 0.01 s: not drawn.
        assert!(!html.contains("at 3s</title>"), "{html}");
    }
}
