//! Results as JSON, as markdown tables (one per scenario, with the ratio
//! sio-nats / peer from the same run) and as one SVG bar chart per
//! scenario.

use std::fmt::Write as _;
use std::path::Path;

use crate::scenario::Row;

/// The scenarios in order, with the metric each one's ratio and plot use
/// and whether more of it is better.
const HEADLINES: [(&str, &str, &str, bool); 11] = [
    ("idle", "1. Idle connections", "rss_per_conn_kib", false),
    ("burst", "2. Burst fan-out", "deliveries_per_s", true),
    ("sparse", "3. Sparse fan-out", "cpu_us_per_delivery", false),
    ("ack", "4. Ack round trip", "cpu_us_per_ack", false),
    ("rooms", "5. Many gateways", "deliveries_per_s", true),
    ("polling", "6. Polling fan-out", "deliveries_per_s", true),
    ("stream", "7. One socket's stream", "events_per_s", true),
    (
        "forwarded",
        "8. Polling on any gateway",
        "cpu_us_per_request",
        false,
    ),
    (
        "handed_over",
        "9. Upgrade on any gateway",
        "cpu_us_per_delivery",
        false,
    ),
    (
        "balanced",
        "10. Through a load balancer",
        "deliveries_per_s",
        true,
    ),
    ("floor", "Floors: the parts underneath", "per_s", true),
];

fn number(v: f64) -> String {
    match v.abs() {
        x if x >= 100_000.0 => format!("{:.0}k", v / 1000.0),
        x if x >= 100.0 => format!("{v:.0}"),
        x if x >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

fn is_sio(row: &Row) -> bool {
    row.target.starts_with("sio-nats")
}

/// The markdown results: a table per scenario.
pub(crate) fn markdown(rows: &[Row], plots: Option<&str>) -> String {
    let mut out = String::new();
    for (scenario, title, headline, _) in HEADLINES {
        let rows: Vec<&Row> = rows.iter().filter(|r| r.scenario == scenario).collect();
        let Some(first) = rows.first() else { continue };
        let _ = writeln!(out, "### {title}\n");
        let names: Vec<&String> = first.metrics.iter().map(|(n, _)| n).collect();
        let _ = write!(out, "| server | load |");
        for n in &names {
            let _ = write!(out, " {n} |");
        }
        let _ = writeln!(out, " sio-nats / this ({headline}) | notes |");
        let _ = writeln!(out, "|{}", " --- |".repeat(names.len() + 4));
        for row in &rows {
            let _ = write!(out, "| {} | {} |", row.target, row.params);
            for n in &names {
                let v = row.metric(n).map_or_else(|| "–".into(), number);
                let _ = write!(out, " {v} |");
            }
            // The sio-nats row with the same load, for the ratio.
            let ours = rows
                .iter()
                .find(|r| is_sio(r) && r.params == row.params && r.target == "sio-nats")
                .and_then(|r| r.metric(headline));
            let ratio = match (ours, row.metric(headline)) {
                (Some(a), Some(b)) if !is_sio(row) && b > 0.0 => format!("{:.2}", a / b),
                _ => "–".into(),
            };
            let mut notes = row.notes.join("; ");
            if row.generator_bound {
                notes.insert_str(0, "load generator saturated; ");
            }
            let _ = writeln!(out, " {ratio} | {notes} |");
        }
        if let Some(dir) = plots {
            let _ = writeln!(out, "\n![{title}]({dir}/{scenario}.svg)");
        }
        out.push('\n');
    }
    out
}

fn output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.lines().next().unwrap_or_default().trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "not found".into())
}

/// The machine and the versions the run used, and the command line.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or_else(String::new, |kib| {
            format!("{:.1} GiB", kib as f64 / 1_048_576.0)
        });
    let command: Vec<String> = std::env::args().collect();
    format!(
        "Run on {model}, {cores} cores available, {memory}; Linux {}; nats-server {}, Node {}, redis-server {}.\n\nCommand: `{}`\n\n",
        output("uname", &["-r"]),
        output("nats-server", &["--version"]).trim_start_matches("nats-server: "),
        output("node", &["--version"]),
        output("redis-server", &["--version"]),
        command.join(" ")
    )
}

/// One horizontal bar chart per scenario, of its headline metric.
pub(crate) fn plots(rows: &[Row], dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (scenario, title, headline, more_is_better) in HEADLINES {
        let bars: Vec<(String, f64, bool)> = rows
            .iter()
            .filter(|r| r.scenario == scenario)
            .filter_map(|r| {
                let v = r.metric(headline)?;
                Some((format!("{} · {}", r.target, r.params), v, is_sio(r)))
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
        let (label_w, bar_w, row_h) = (330.0, 380.0, 22.0);
        let height = 40.0 + row_h * bars.len() as f64 + 10.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="12">"#,
            label_w + bar_w + 90.0
        );
        let better = if more_is_better {
            "more is better"
        } else {
            "less is better"
        };
        let _ = writeln!(
            svg,
            r#"<text x="8" y="20" font-size="14" font-weight="bold">{title}: {headline} ({better})</text>"#
        );
        for (i, (label, value, ours)) in bars.iter().enumerate() {
            let y = 34.0 + row_h * i as f64;
            let w = bar_w * value / max;
            let fill = if *ours { "#2a7ab0" } else { "#9a9a9a" };
            let label = label.replace('&', "&amp;").replace('<', "&lt;");
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="end">{label}</text><rect x="{}" y="{y}" width="{w:.1}" height="{}" fill="{fill}"/><text x="{}" y="{}">{}</text>"#,
                label_w - 6.0,
                y + 13.0,
                label_w,
                row_h - 6.0,
                label_w + w + 4.0,
                y + 13.0,
                number(*value)
            );
        }
        svg.push_str("</svg>\n");
        std::fs::write(dir.join(format!("{scenario}.svg")), svg)?;
    }
    Ok(())
}

/// Replaces what lies between the results markers of `doc` (or appends
/// them), so the hand-written analysis around them stays.
pub(crate) fn splice(doc: &str, results: &str) -> String {
    const START: &str = "<!-- results: written by sio-bench suite -->";
    const END: &str = "<!-- /results -->";
    let block = format!("{START}\n{results}{END}");
    match (doc.find(START), doc.find(END)) {
        (Some(s), Some(e)) if e > s => format!("{}{block}{}", &doc[..s], &doc[e + END.len()..]),
        _ => format!("{doc}\n{block}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_the_text_around_the_results() {
        let doc = splice("# Title\n\nanalysis\n", "one\n");
        assert!(doc.starts_with("# Title\n\nanalysis\n"));
        let again = splice(&format!("{doc}after\n"), "two\n");
        assert!(again.contains("two\n") && !again.contains("one\n"));
        assert!(again.ends_with("after\n"));
    }
}
