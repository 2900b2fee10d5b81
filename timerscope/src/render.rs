//! Text and JSON output of the commands' reports.

use std::fmt;

use analyzer::classify::ClassifyReport;
use analyzer::diff::{DiffReport, Presence};
use analyzer::flamegraph::FlamegraphSummary;
use analyzer::units::human;
use inspect::report::{InspectReport, Reachability, ServiceReport, ShareMeasure, Status};

/// A report as the text a command prints.
pub struct Text<'a, T>(pub &'a T);

/// Prints a report: as JSON with `--json`, else as text.
pub fn print_report<T: serde::Serialize>(report: &T, json: bool)
where
    for<'a> Text<'a, T>: fmt::Display,
{
    if json {
        println!("{}", to_json(report));
    } else {
        print!("{}", Text(report));
    }
}

/// JSON for `--json`: the serde form of any report.
pub fn to_json<T: serde::Serialize>(report: &T) -> String {
    // These reports hold only strings, numbers and enums: serializing cannot fail.
    serde_json::to_string_pretty(report).expect("report serializes")
}

fn signed(value: i64, unit: &str) -> String {
    let text = human(value as f64, unit);
    if value > 0 { format!("+{text}") } else { text }
}

impl fmt::Display for Text<'_, DiffReport> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Type: {}  base total {}  new total {}  (! = share moved more than {} pp)",
            self.0.sample_type,
            human(self.0.base_total as f64, &self.0.unit),
            human(self.0.new_total as f64, &self.0.unit),
            self.0.threshold_pp
        )?;
        writeln!(
            f,
            "  {:>11} {:>23} {:>11} {:>23}  function",
            "flat Δ", "flat% base→new (Δpp)", "cum Δ", "cum% base→new (Δpp)"
        )?;
        for r in &self.0.rows {
            let note = match r.presence {
                Presence::Both => "",
                Presence::Appeared => " (appeared)",
                Presence::Vanished => " (vanished)",
            };
            writeln!(
                f,
                "{} {:>11} {:>6.2}→{:>6.2} ({:>+7.2}) {:>11} {:>6.2}→{:>6.2} ({:>+7.2})  {}{note}",
                if r.flagged { '!' } else { ' ' },
                signed(r.flat_delta, &self.0.unit),
                r.flat_share_base,
                r.flat_share_new,
                r.flat_share_delta_pp,
                signed(r.cum_delta, &self.0.unit),
                r.cum_share_base,
                r.cum_share_new,
                r.cum_share_delta_pp,
                r.function
            )?;
        }
        if self.0.omitted_rows > 0 {
            writeln!(
                f,
                "  ... {} smaller changes not shown (--top 0 shows all)",
                self.0.omitted_rows
            )?;
        }
        writeln!(f, "appeared: {}", list_or_none(&self.0.appeared))?;
        write!(f, "vanished: {}", list_or_none(&self.0.vanished))
    }
}

/// At most this many names of appeared/vanished functions in text output (JSON has them all).
const LISTED_NAMES: usize = 10;

fn list_or_none(names: &[String]) -> String {
    match names.len() {
        0 => "none".to_owned(),
        n if n <= LISTED_NAMES => names.join(", "),
        n => format!(
            "{}, and {} more (--json lists all)",
            names[..LISTED_NAMES].join(", "),
            n - LISTED_NAMES
        ),
    }
}

impl fmt::Display for Text<'_, ClassifyReport> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.findings.is_empty() {
            writeln!(f, "no findings")?;
        }
        for finding in &self.0.findings {
            writeln!(
                f,
                "[{}] {} at {} ({}:{})\n    {}\n    fix: {}",
                finding.severity,
                finding.kind,
                finding.function,
                finding.file,
                finding.line,
                finding.evidence,
                finding.suggestion
            )?;
        }
        for note in &self.0.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Text<'_, FlamegraphSummary> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} flame graph of {} with {} stacks",
            if self.0.differential {
                "differential"
            } else {
                "plain"
            },
            self.0.sample_type,
            self.0.stacks
        )
    }
}

/// Flagged rows shown per profile in text (JSON has them all).
const SHOWN_SHIFTS: usize = 10;

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}%"))
}

fn points(value: f64) -> String {
    format!("{value:+.1} pp")
}

impl fmt::Display for Text<'_, InspectReport> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unreachable = self
            .0
            .services
            .iter()
            .filter(|s| s.reachability == Reachability::Unreachable)
            .count();
        writeln!(
            f,
            "timerscope inspect: {} service(s), {} reached, {unreachable} unreachable; store {}",
            self.0.services.len(),
            self.0.services.len() - unreachable,
            self.0.store.display()
        )?;
        for service in &self.0.services {
            writeln!(f)?;
            write!(f, "{}", Text(service))?;
        }
        Ok(())
    }
}

impl fmt::Display for Text<'_, ServiceReport> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.reachability == Reachability::Unreachable {
            writeln!(
                f,
                "== {}  {}  UNREACHABLE",
                self.0.service,
                self.0.shown_target()
            )?;
            writeln!(f, "   {}", self.0.error.as_deref().unwrap_or("no answer"))?;
            match &self.0.previous {
                Some(last) => writeln!(
                    f,
                    "   last stored round {last}, {} round(s) stored",
                    self.0.rounds_stored
                )?,
                None => writeln!(f, "   nothing stored yet")?,
            }
            return Ok(());
        }
        writeln!(
            f,
            "== {}  {}  round {}",
            self.0.service,
            self.0.shown_target(),
            self.0.round.as_deref().unwrap_or("-")
        )?;
        let baseline = match &self.0.baseline {
            Some(b) if b.pinned => format!("baseline {} (pinned)", b.timestamp),
            Some(b) => format!(
                "baseline {} (the oldest stored round; pin one with `timerscope inspect baseline set {}`)",
                b.timestamp, self.0.service
            ),
            None => "no baseline yet".to_owned(),
        };
        writeln!(
            f,
            "   {baseline}, previous {}, {} round(s) stored",
            self.0.previous.as_deref().unwrap_or("none"),
            self.0.rounds_stored
        )?;
        writeln!(
            f,
            "   {:<44} {:>10} {:>10} {:>10}  {:<12}  status",
            "metric", "baseline", "previous", "current", "threshold"
        )?;
        for t in &self.0.trends {
            let value = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| human(v, t.unit));
            let rate = |v: f64| match t.unit {
                "bytes" => format!("{:.2}MiB/s", v / (1024.0 * 1024.0)),
                _ => format!("{v:.1}/s"),
            };
            let fit = match t.slope_per_second {
                Some(slope) => format!("{} over {} rounds", rate(slope), t.rounds),
                None => "needs 2 rounds".to_owned(),
            };
            let status = match (t.status, t.severity) {
                (Status::Alert, Some(severity)) => format!(
                    "ALERT ({severity}): {}growing {fit}",
                    if t.keeps_rising { "steadily " } else { "" }
                ),
                (Status::Ok, _) => format!("ok: {fit}"),
                _ => format!("not judged: {fit}"),
            };
            writeln!(
                f,
                "   {:<44} {:>10} {:>10} {:>10}  {:<12}  {status}",
                t.metric.label(),
                value(t.baseline),
                value(t.previous),
                value(Some(t.current)),
                rate(t.threshold_per_second)
            )?;
        }
        for c in &self.0.shares {
            let threshold = format!("±{} pp", c.threshold_pp);
            if c.shifts.is_empty() {
                let status = match c.status {
                    Status::NotJudged => format!("not judged: {}", c.detail),
                    _ => format!("ok: {}", c.detail),
                };
                writeln!(
                    f,
                    "   {:<44} {:>10} {:>10} {:>10}  {threshold:<12}  {status}",
                    format!("{} shares", c.profile),
                    "",
                    "",
                    ""
                )?;
            }
            for s in c.shifts.iter().take(SHOWN_SHIFTS) {
                let mut moves = Vec::new();
                if let Some(p) = s.points_vs_baseline {
                    moves.push(format!("{} vs baseline", points(p)));
                }
                if let Some(p) = s.points_vs_previous {
                    moves.push(format!("{} vs previous", points(p)));
                }
                let measure = match s.measure {
                    ShareMeasure::Flat => "",
                    ShareMeasure::Cum => " (cum)",
                };
                writeln!(
                    f,
                    "   {:<44} {:>10} {:>10} {:>10}  {threshold:<12}  ALERT ({}): {}",
                    format!("{} share {}{measure}", c.profile, s.function),
                    percent(s.baseline_share),
                    percent(s.previous_share),
                    percent(Some(s.current_share)),
                    s.severity,
                    moves.join(", ")
                )?;
            }
            if c.shifts.len() > SHOWN_SHIFTS {
                writeln!(
                    f,
                    "   ... {} more {} share shifts (--json lists all)",
                    c.shifts.len() - SHOWN_SHIFTS,
                    c.profile
                )?;
            }
        }
        if self.0.findings.is_empty() {
            writeln!(f, "   no findings")?;
        }
        for finding in &self.0.findings {
            let kinds: Vec<&str> = finding.kinds.iter().map(|k| k.as_str()).collect();
            writeln!(
                f,
                "   [{}] {} at {}",
                finding.severity,
                kinds.join(" + "),
                finding.function
            )?;
            writeln!(f, "       {}", finding.summary)?;
            if finding.evidence.len() > 1 {
                for e in &finding.evidence {
                    writeln!(f, "       {}: {}", e.kind, e.evidence)?;
                }
            }
            let mut fixes: Vec<&str> = finding
                .evidence
                .iter()
                .map(|e| e.suggestion.as_str())
                .collect();
            fixes.dedup();
            for fix in fixes {
                writeln!(f, "       fix: {fix}")?;
            }
        }
        for failure in &self.0.profile_errors {
            writeln!(
                f,
                "   profile {} not pulled: {}",
                failure.profile, failure.error
            )?;
        }
        for note in &self.0.notes {
            writeln!(f, "   note: {note}")?;
        }
        Ok(())
    }
}
