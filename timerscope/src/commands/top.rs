//! `timerscope top`: a live view of one process, refreshed every `--refresh`: its sites (first
//! user-code function and line) by the chosen sample type, each with its change since the last
//! refresh, and the process's RSS, probe overhead and drops. On a terminal it is an interactive
//! screen (ratatui); otherwise plain-text tables.
//!
//! It attaches the same capture session as `watch`, at `--events all` by default (every
//! lifecycle event, so created, reset, stopped and fired each have a rate), under the same
//! `--max-overhead` budget that steps down when the probes cost too much.

use std::{
    collections::HashMap,
    io::{IsTerminal as _, Write as _},
    time::{Duration, Instant, SystemTime},
};

use analyzer::{gosym::is_user_function, units::human};
use capture::{
    budget::OverheadBudget,
    collect::Snapshot,
    preflight,
    session::{Probes, Session, report_drops},
};
use clap::Args;
use pprof::{ResolvedProfile, vocabulary::SampleType};
use ratatui::{
    crossterm::{
        event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table},
};
use tokio::sync::mpsc;

use super::{MapSizeArgs, StopSignals, events_parser};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Process to show; `top` ends when it exits.
    #[arg(long)]
    pub pid: u32,
    /// Time between refreshes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub refresh: Duration,
    /// Stop after N refreshes; when stdout is not a terminal, print one table at the end instead
    /// of one per refresh.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: Option<u32>,
    /// Sample type shown first (keys `t`/`T` switch on a terminal).
    #[arg(long, default_value = SampleType::DEFAULT.as_str(), value_parser = sample_type_parser())]
    pub sample_type: SampleType,
    /// Sites shown in plain-text tables.
    #[arg(long, default_value_t = 20)]
    pub rows: usize,
    /// Timer events to capture: `all` (every lifecycle event: rates of created, reset, stopped
    /// and fired), `create` (creation only: cheaper on busy servers), `none`.
    #[arg(long, default_value = "all", value_parser = events_parser())]
    pub events: pprof::vocabulary::Events,
    /// Most CPU the target may spend in timerscope's probes, in percent of one CPU (as `watch`).
    #[arg(long, default_value_t = 1.0, value_name = "PCT")]
    pub max_overhead: f64,
    #[command(flatten)]
    pub sizes: MapSizeArgs,
}

fn sample_type_parser() -> impl clap::builder::TypedValueParser<Value = SampleType> {
    use clap::builder::TypedValueParser as _;
    let names: Vec<&'static str> = SampleType::ALL.iter().map(|t| t.as_str()).collect();
    clap::builder::PossibleValuesParser::new(names).map(|name| {
        *SampleType::ALL
            .iter()
            .find(|t| t.as_str() == name)
            .expect("one of the possible values")
    })
}

/// Sample types whose value is a state at the end of the refresh (shown as is, with its change
/// per second); the others count events in the refresh (shown per second).
fn is_state(sample_type: SampleType) -> bool {
    matches!(
        sample_type,
        SampleType::TimersLive
            | SampleType::MmapLiveBytes
            | SampleType::TimersPending
            | SampleType::Goroutines
    )
}

/// How the site table is ordered (key `s` cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sort {
    Value,
    Change,
    Name,
}

impl Sort {
    fn next(self) -> Self {
        match self {
            Sort::Value => Sort::Change,
            Sort::Change => Sort::Name,
            Sort::Name => Sort::Value,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Sort::Value => "value",
            Sort::Change => "change",
            Sort::Name => "name",
        }
    }
}

/// One site's value of one sample type: a state, or events per second.
#[derive(Clone, Debug)]
struct SiteRow {
    site: String,
    value: f64,
    /// Per second since the previous refresh: of the state, or of the event rate.
    change: f64,
}

/// What one refresh measured.
struct Measurement {
    /// Per sample type (in profile order): the site rows.
    types: Vec<(SampleType, Vec<SiteRow>)>,
    rss_bytes: Option<u64>,
    drops: u64,
    drops_total: u64,
    overhead: Option<f64>,
    tier: String,
    seconds: f64,
    /// The overhead budget's step down at this refresh.
    step: Option<String>,
}

/// The values shown at the previous refresh, per (sample type, site).
type Previous = HashMap<(SampleType, String), f64>;

/// `main.f (file.go:12)`: the first user-code frame of a stack, or its leaf for runtime-only
/// stacks.
fn site_of(profile: &ResolvedProfile, sample: &pprof::ResolvedSample) -> String {
    let frame = profile
        .stack(sample)
        .find(|f| is_user_function(&f.function))
        .or_else(|| profile.stack(sample).next());
    match frame {
        Some(f) => {
            let file = f.file.rsplit('/').next().unwrap_or(&f.file);
            format!("{} ({file}:{})", f.function, f.line)
        }
        None => "(no stack)".to_owned(),
    }
}

/// Site rows of every sample type of `profile`, covering `seconds`, with changes against
/// `previous` (which becomes this refresh's values).
fn site_rows(
    profile: &ResolvedProfile,
    seconds: f64,
    previous: &mut Previous,
) -> Vec<(SampleType, Vec<SiteRow>)> {
    let mut out = Vec::new();
    let mut now: Previous = HashMap::new();
    for (column, kind) in profile.sample_types.iter().enumerate() {
        let Some(&sample_type) = SampleType::ALL.iter().find(|t| t.as_str() == kind.ty) else {
            continue;
        };
        let mut sums: HashMap<String, i64> = HashMap::new();
        for sample in profile.samples.iter().filter(|s| s.values[column] != 0) {
            *sums.entry(site_of(profile, sample)).or_default() += sample.values[column];
        }
        let per = |v: i64| {
            if is_state(sample_type) {
                v as f64
            } else {
                v as f64 / seconds
            }
        };
        // Sites seen last time and gone now still show, at 0, for one refresh: their fall is news.
        for (_, site) in previous.keys().filter(|(t, _)| *t == sample_type) {
            sums.entry(site.clone()).or_insert(0);
        }
        let rows: Vec<SiteRow> = sums
            .into_iter()
            .map(|(site, v)| {
                let value = per(v);
                let before = previous
                    .get(&(sample_type, site.clone()))
                    .copied()
                    .unwrap_or(0.0);
                if value != 0.0 {
                    now.insert((sample_type, site.clone()), value);
                }
                SiteRow {
                    change: (value - before) / seconds,
                    site,
                    value,
                }
            })
            .filter(|row| row.value != 0.0 || row.change != 0.0)
            .collect();
        out.push((sample_type, rows));
    }
    *previous = now;
    out
}

/// The attached process and what `top` keeps between refreshes.
struct Live {
    session: Session,
    budget: OverheadBudget,
    last: Snapshot,
    last_at: Instant,
    previous: Previous,
    drops_total: u64,
    /// Plain-text output: budget steps and drops also go to stderr (on a terminal the screen
    /// shows them).
    plain: bool,
}

impl Live {
    fn refresh(&mut self) -> anyhow::Result<Measurement> {
        let step = self.budget.check(&mut self.session)?.map(|step| step.0);
        if let Some(step) = step.as_ref().filter(|_| self.plain) {
            eprintln!("timerscope: pid {}: {step}", self.session.pid);
        }
        let now = self.session.snapshot()?;
        let at = Instant::now();
        let elapsed = at.duration_since(self.last_at);
        let seconds = elapsed.as_secs_f64().max(1e-3);
        let delta = now.since(&self.last);
        let start = SystemTime::now() - elapsed;
        let profile = self.session.encode(&delta, start, elapsed, &[])?;
        let resolved = ResolvedProfile::new(&profile);
        let drops = delta.total_drops();
        self.drops_total += drops;
        if self.plain {
            report_drops(&delta);
        }
        self.last = now;
        self.last_at = at;
        Ok(Measurement {
            types: site_rows(&resolved, seconds, &mut self.previous),
            rss_bytes: gobinary::process::rss_bytes(self.session.pid),
            drops,
            drops_total: self.drops_total,
            overhead: self.budget.ratio(),
            tier: self.session.capture_tier().to_string(),
            seconds,
            step,
        })
    }
}

/// What the screen shows: the chosen sample type and order.
struct ViewState {
    sample_type: SampleType,
    sort: Sort,
}

impl ViewState {
    /// Moves to the next (or previous) sample type the profile has.
    fn switch_type(&mut self, measurement: &Measurement, forward: bool) {
        let types: Vec<SampleType> = measurement.types.iter().map(|(t, _)| *t).collect();
        if types.is_empty() {
            return;
        }
        let at = types.iter().position(|&t| t == self.sample_type);
        let n = types.len();
        self.sample_type = types[match (at, forward) {
            (None, _) => 0,
            (Some(i), true) => (i + 1) % n,
            (Some(i), false) => (i + n - 1) % n,
        }];
    }

    /// The rows of the chosen sample type, in the chosen order.
    fn rows(&self, measurement: &Measurement) -> Vec<SiteRow> {
        let mut rows = measurement
            .types
            .iter()
            .find(|(t, _)| *t == self.sample_type)
            .map(|(_, rows)| rows.clone())
            .unwrap_or_default();
        rows.sort_by(|a, b| match self.sort {
            Sort::Value => b.value.total_cmp(&a.value).then(a.site.cmp(&b.site)),
            Sort::Change => b
                .change
                .abs()
                .total_cmp(&a.change.abs())
                .then(a.site.cmp(&b.site)),
            Sort::Name => a.site.cmp(&b.site),
        });
        rows
    }

    /// Column titles: value and change, with their units.
    fn titles(&self) -> (String, String) {
        let name = self.sample_type.as_str();
        if is_state(self.sample_type) {
            (name.to_owned(), "change/s".to_owned())
        } else {
            (format!("{name}/s"), "change of /s".to_owned())
        }
    }

    fn format(&self, value: f64) -> String {
        let unit = self.sample_type.unit();
        if unit == "count" && (value.fract() == 0.0 || value.abs() >= 100.0) {
            format!("{value:.0}")
        } else if unit == "count" {
            format!("{value:.1}")
        } else {
            human(value, unit)
        }
    }

    fn format_change(&self, change: f64) -> String {
        let text = self.format(change);
        if change > 0.0 {
            format!("+{text}")
        } else {
            text
        }
    }
}

/// The status line above the table.
fn header(session_line: &str, pid: u32, m: &Measurement) -> String {
    let rss = m
        .rss_bytes
        .map_or_else(|| "-".to_owned(), |b| human(b as f64, "bytes"));
    let overhead = m.overhead.map_or_else(
        || "(measuring)".to_owned(),
        |r| format!("{:.3}% of a CPU", r * 100.0),
    );
    format!(
        "pid {pid}  {session_line}\nrss {rss}  probe overhead {overhead}  tier {}  drops {} (total {})  refresh {:.1}s",
        m.tier, m.drops, m.drops_total, m.seconds
    )
}

/// One plain-text table.
fn plain_table(view: &ViewState, head: &str, m: &Measurement, limit: usize) -> String {
    let (value_title, change_title) = view.titles();
    let mut text = format!("{head}\n{value_title:>20} {change_title:>14}  site\n");
    let rows = view.rows(m);
    for row in rows.iter().take(limit) {
        text.push_str(&format!(
            "{:>20} {:>14}  {}\n",
            view.format(row.value),
            view.format_change(row.change),
            row.site
        ));
    }
    if rows.is_empty() {
        text.push_str("  (no sites yet)\n");
    } else if rows.len() > limit {
        text.push_str(&format!(
            "  ... {} more sites (--rows shows more)\n",
            rows.len() - limit
        ));
    }
    text
}

pub async fn run(args: TopArgs) -> anyhow::Result<u8> {
    let mut signals = StopSignals::new()?;
    preflight::require_root("top")?;
    preflight::require_kernel_features()?;
    let pid = preflight::require_process(args.pid)?;
    let budget = OverheadBudget::new(args.max_overhead)?;
    // The C heap probes are watch's opt-in extra; top shows timers and mappings.
    let mut session = Session::attach(
        pid,
        Probes {
            sizes: (&args.sizes).into(),
            events: args.events,
            c_heap: false,
            goroutines: false,
            mmap: false,
        },
    )?;
    let last = session.snapshot()?;
    let session_line = format!(
        "{} ({})",
        session
            .binary_path()
            .file_name()
            .map_or_else(|| "unknown".into(), |n| n.to_string_lossy()),
        session.describe()
    );
    let mut live = Live {
        session,
        budget,
        last,
        last_at: Instant::now(),
        previous: HashMap::new(),
        drops_total: 0,
        plain: !std::io::stdout().is_terminal(),
    };
    let view = ViewState {
        sample_type: args.sample_type,
        sort: Sort::Value,
    };
    let result = if live.plain {
        plain(&args, &mut live, view, &session_line, &mut signals).await
    } else {
        interactive(&args, &mut live, view, &session_line, &mut signals).await
    };
    // Every probe detached before exiting, however the view ended.
    live.session.detach();
    result.map(|()| crate::exit::SUCCESS)
}

/// Plain text: a table per refresh, or one after `--iterations`.
async fn plain(
    args: &TopArgs,
    live: &mut Live,
    view: ViewState,
    session_line: &str,
    signals: &mut StopSignals,
) -> anyhow::Result<()> {
    eprintln!(
        "timerscope: top of pid {} ({session_line})",
        live.session.pid
    );
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + args.refresh, args.refresh);
    let mut done = 0;
    loop {
        tokio::select! {
            signal = signals.recv() => {
                eprintln!("timerscope: {signal}: detaching");
                return Ok(());
            }
            _ = tick.tick() => {}
        }
        if !preflight::process_alive(live.session.pid) {
            eprintln!("timerscope: pid {} exited", live.session.pid);
            return Ok(());
        }
        let m = live.refresh()?;
        done += 1;
        let last = args.iterations.is_some_and(|n| done >= n);
        if args.iterations.is_none() || last {
            let head = header(session_line, live.session.pid, &m);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", plain_table(&view, &head, &m, args.rows))?;
            out.flush()?;
        }
        if last {
            return Ok(());
        }
    }
}

/// Restores the terminal however the interactive view ends.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        enable_raw_mode()?;
        let guard = Self;
        execute!(std::io::stdout(), EnterAlternateScreen)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
        let _ = disable_raw_mode();
    }
}

/// What a key asks for.
enum Key {
    Quit,
    NextType,
    PreviousType,
    NextSort,
}

/// Reads keys on a thread of its own (crossterm's reads block) and sends what they ask for.
fn spawn_key_reader() -> mpsc::UnboundedReceiver<Key> {
    let (send, receive) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            // Polling lets the thread notice that the view has ended and the channel closed.
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => {}
                Ok(false) if send.is_closed() => return,
                Ok(false) => continue,
                Err(_) => return,
            }
            let Ok(Event::Key(key)) = event::read() else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            let action = match key.code {
                KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
                KeyCode::Char('t') | KeyCode::Tab | KeyCode::Right => Key::NextType,
                KeyCode::Char('T') | KeyCode::BackTab | KeyCode::Left => Key::PreviousType,
                KeyCode::Char('s') => Key::NextSort,
                _ => continue,
            };
            if send.send(action).is_err() {
                return;
            }
        }
    });
    receive
}

async fn interactive(
    args: &TopArgs,
    live: &mut Live,
    mut view: ViewState,
    session_line: &str,
    signals: &mut StopSignals,
) -> anyhow::Result<()> {
    let _guard = TerminalGuard::enter()?;
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;
    let mut keys = spawn_key_reader();
    let mut tick = tokio::time::interval(args.refresh);
    // The first tick fires at once: show the (empty) table while the first refresh runs.
    tick.tick().await;
    let mut measurement: Option<Measurement> = None;
    let mut last_step: Option<String> = None;
    let mut done = 0;
    loop {
        if let Some(m) = &measurement {
            let mut head = header(session_line, live.session.pid, m);
            if let Some(step) = &last_step {
                head.push_str(&format!("\n{step}"));
            }
            terminal.draw(|frame| draw(frame, &view, &head, m))?;
        }
        tokio::select! {
            _ = signals.recv() => return Ok(()),
            key = keys.recv() => match key {
                None | Some(Key::Quit) => return Ok(()),
                Some(Key::NextSort) => view.sort = view.sort.next(),
                Some(Key::NextType) | Some(Key::PreviousType) if measurement.is_none() => {}
                Some(Key::NextType) => view.switch_type(measurement.as_ref().expect("checked"), true),
                Some(Key::PreviousType) => view.switch_type(measurement.as_ref().expect("checked"), false),
            },
            _ = tick.tick() => {
                if !preflight::process_alive(live.session.pid) {
                    return Ok(());
                }
                let m = live.refresh()?;
                if m.step.is_some() {
                    last_step.clone_from(&m.step);
                }
                measurement = Some(m);
                done += 1;
                if args.iterations.is_some_and(|n| done >= n) {
                    return Ok(());
                }
            }
        }
    }
}

fn draw(frame: &mut ratatui::Frame, view: &ViewState, head: &str, m: &Measurement) {
    let [top, table_area, help] = Layout::vertical([
        Constraint::Length(head.lines().count() as u16),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(head.to_owned()), top);
    let (value_title, change_title) = view.titles();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let rows: Vec<Row> = view
        .rows(m)
        .into_iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(Line::from(view.format(r.value)).right_aligned()),
                Cell::from(Line::from(view.format_change(r.change)).right_aligned()),
                Cell::from(r.site),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(20),
            Constraint::Length(14),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new(vec![
            Cell::from(Line::from(value_title).right_aligned()),
            Cell::from(Line::from(change_title).right_aligned()),
            Cell::from("site"),
        ])
        .style(bold),
    );
    frame.render_widget(table, table_area);
    frame.render_widget(
        Paragraph::new(format!(
            "q quit  t/T sample type ({})  s sort ({})",
            view.sample_type.as_str(),
            view.sort.as_str()
        )),
        help,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use pprof::{ResolvedFrame, ResolvedSample, ValueKind};

    /// A stack, leaf first, as (function, line).
    type Stack<'a> = &'a [(&'a str, i64)];

    /// A profile of `timers_created` and `timers_live` with one sample per (stack, values).
    fn profile(samples: &[(Stack, [i64; 2])]) -> ResolvedProfile {
        let mut frames: Vec<ResolvedFrame> = Vec::new();
        let samples = samples
            .iter()
            .map(|(stack, values)| ResolvedSample {
                stack: stack
                    .iter()
                    .map(|&(function, line)| {
                        let frame = ResolvedFrame {
                            function: function.to_owned(),
                            file: "/src/app/main.go".to_owned(),
                            line,
                        };
                        let id = frames.iter().position(|f| *f == frame).unwrap_or_else(|| {
                            frames.push(frame);
                            frames.len() - 1
                        });
                        id as u32
                    })
                    .collect(),
                values: values.to_vec(),
                labels: Vec::new(),
            })
            .collect();
        let kind = |t: SampleType| ValueKind {
            ty: t.as_str().to_owned(),
            unit: t.unit().to_owned(),
        };
        ResolvedProfile {
            sample_types: vec![
                kind(SampleType::TimersCreated),
                kind(SampleType::TimersLive),
            ],
            default_sample_type: SampleType::TimersLive.as_str().to_owned(),
            period_type: None,
            period: 1,
            time_nanos: 0,
            duration_nanos: 0,
            comments: Vec::new(),
            main_file: String::new(),
            main_build_id: String::new(),
            frames,
            samples,
        }
    }

    fn rows(types: &[(SampleType, Vec<SiteRow>)], t: SampleType) -> Vec<(String, f64, f64)> {
        let mut rows: Vec<_> = types
            .iter()
            .find(|(ty, _)| *ty == t)
            .unwrap()
            .1
            .iter()
            .map(|r| (r.site.clone(), r.value, r.change))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    #[test]
    fn levels_stay_levels_counts_become_rates_and_changes_are_per_second() {
        let leak: Stack = &[("time.AfterFunc", 9), ("main.leak", 74)];
        let runtime_only: Stack = &[("runtime.modtimer", 5)];
        let mut previous = Previous::new();
        // First refresh over 2 s: 40 created at main.leak, 30 of them live; 4 runtime creations.
        let first = site_rows(
            &profile(&[(leak, [40, 30]), (runtime_only, [4, 0])]),
            2.0,
            &mut previous,
        );
        let leak_site = "main.leak (main.go:74)".to_owned();
        let runtime_site = "runtime.modtimer (main.go:5)".to_owned();
        assert_eq!(
            rows(&first, SampleType::TimersCreated),
            [
                (leak_site.clone(), 20.0, 10.0),
                (runtime_site.clone(), 2.0, 1.0)
            ]
        );
        assert_eq!(
            rows(&first, SampleType::TimersLive),
            [(leak_site.clone(), 30.0, 15.0)]
        );
        // Second refresh over 1 s: 10 created, live up to 50; the runtime site went quiet.
        let second = site_rows(&profile(&[(leak, [10, 50])]), 1.0, &mut previous);
        assert_eq!(
            rows(&second, SampleType::TimersCreated),
            [(leak_site.clone(), 10.0, -10.0), (runtime_site, 0.0, -2.0)]
        );
        assert_eq!(
            rows(&second, SampleType::TimersLive),
            [(leak_site, 50.0, 20.0)]
        );
        // Third: nothing at all; the quiet runtime site is gone for good.
        let third = site_rows(&profile(&[]), 1.0, &mut previous);
        assert_eq!(rows(&third, SampleType::TimersCreated).len(), 1);
    }
}
