//! `watch --max-overhead`: the target's CPU time in timerscope's probes, measured, and the steps
//! down when it exceeds the budget. The cost is the uprobe programs' own run time from the
//! kernel's BPF statistics plus their runs (one per hit) times the trap cost measured once at
//! start ([`crate::calibrate`]). The budget is a bucket: it fills at `--max-overhead` of one CPU
//! up to [`BURST`] of that rate, and every check takes out what the probes cost since the last
//! one. An empty bucket means over budget. Checked often, a hot hook (a goroutine per request
//! of a saturated server) is stepped down within a check or two, while a burst that the bucket
//! holds (a server's start) is not. Over budget, one step per check, losing the least first: the C
//! heap probes go (an opt-in extra); then the busiest reset or stop hook walks its stack at one
//! hit in [`SAMPLED_STACK_RATE`] (events still counted, at the immediate caller); once every
//! such hook is sampled, the goroutine probes go together (when they were hit in the window:
//! a goroutine per request makes them as hot as the requests); then the busiest timer hook is
//! detached. Steps are never undone while the process is watched.

use std::{
    os::fd::OwnedFd,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use pprof::vocabulary::CommentKey;
use probe_common::{event, hook_flag};

use crate::{
    attach::ProgramStats, cheap::CHeapCapture, goroutine_probes::GoroutineCapture, session::Session,
};

/// One stack walk in this many hits of a sampled hook.
pub const SAMPLED_STACK_RATE: u32 = 64;

/// How often the caller should check: a hook far over budget costs the target at most about
/// this long before it is stepped down.
pub const CHECK_PERIOD: Duration = Duration::from_millis(100);

/// The bucket holds this much time at the budget's rate: a burst of probe cost that the budget
/// would allow over one second is not a step, however short it is.
const BURST: Duration = Duration::from_secs(1);

/// The reported ratio is over windows at least this long.
const RATIO_WINDOW: Duration = Duration::from_secs(1);

/// Cost readings of one watched process.
struct Reading {
    at: Instant,
    stats: ProgramStats,
    hits: Vec<u64>,
    /// Goroutine creations and exits seen.
    goroutine_hits: u64,
}

pub struct OverheadBudget {
    /// `--max-overhead` as a ratio of one CPU.
    max_ratio: f64,
    trap: Duration,
    /// Keeps the kernel's BPF run-time statistics on.
    _stats: OwnedFd,
    /// At the last check.
    last: Option<Reading>,
    /// Budget left, in nanoseconds of CPU: filled at `max_ratio`, capped at [`BURST`] of it.
    bucket_ns: f64,
    /// When the reported ratio's window started, and the probes' cost until then.
    ratio_start: Option<(Instant, u64)>,
    /// The ratio over the last full [`RATIO_WINDOW`].
    ratio: Option<f64>,
    /// `unix-seconds what`, one per step taken.
    steps: Vec<String>,
    /// Said once when over budget with nothing left to take away.
    exhausted: bool,
}

/// One step the budget took, to say on stderr.
pub struct Step(pub String);

impl OverheadBudget {
    /// A budget of `max_percent` percent of one CPU; calibrates the trap cost on first use.
    pub fn new(max_percent: f64) -> anyhow::Result<Self> {
        let stats = crate::attach::enable_run_time_stats()
            .context("overhead budget: cannot enable the kernel's BPF run-time statistics")?;
        let trap = crate::calibrate::uprobe_trap_cost()
            .map_err(|e| anyhow::anyhow!("overhead budget: calibrating the uprobe cost: {e}"))?;
        let max_ratio = max_percent / 100.0;
        Ok(Self {
            max_ratio,
            trap,
            _stats: stats,
            last: None,
            bucket_ns: burst_ns(max_ratio),
            ratio_start: None,
            ratio: None,
            steps: Vec::new(),
            exhausted: false,
        })
    }

    pub fn max_ratio(&self) -> f64 {
        self.max_ratio
    }

    /// The measured share of one CPU over the last full second, once one was measured.
    pub fn ratio(&self) -> Option<f64> {
        self.ratio
    }

    /// How many steps down were taken.
    pub fn steps_taken(&self) -> usize {
        self.steps.len()
    }

    /// Takes what the probes cost since the last check out of the bucket, and steps down when
    /// it is empty.
    pub fn check(&mut self, session: &mut Session) -> anyhow::Result<Option<Step>> {
        let Some(now) = reading(session) else {
            return Ok(None);
        };
        let Some(last) = self.last.take() else {
            self.ratio_start = Some((now.at, self.cost_ns(&now.stats)));
            self.last = Some(now);
            return Ok(None);
        };
        let window = now.at.duration_since(last.at);
        let cost_ns = self
            .cost_ns(&now.stats)
            .saturating_sub(self.cost_ns(&last.stats));
        self.bucket_ns = (self.bucket_ns + window.as_nanos() as f64 * self.max_ratio)
            .min(burst_ns(self.max_ratio))
            - cost_ns as f64;
        if let Some((start, start_cost)) = self.ratio_start {
            let elapsed = now.at.duration_since(start);
            if elapsed >= RATIO_WINDOW {
                let total = self.cost_ns(&now.stats);
                self.ratio =
                    Some(total.saturating_sub(start_cost) as f64 / elapsed.as_nanos() as f64);
                self.ratio_start = Some((now.at, total));
            }
        }
        let busy: Vec<u64> = now
            .hits
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(last.hits.get(i).copied().unwrap_or(0)))
            .collect();
        let goroutines_busy = now.goroutine_hits.saturating_sub(last.goroutine_hits);
        self.last = Some(now);
        if self.bucket_ns >= 0.0 {
            return Ok(None);
        }
        // What the window cost, as a share of one CPU: what the step message reports.
        let ratio = cost_ns as f64 / window.as_nanos().max(1) as f64;
        let step = self.step_down(session, &busy, goroutines_busy, window)?;
        let Some(what) = step else {
            if !self.exhausted {
                self.exhausted = true;
                return Ok(Some(Step(format!(
                    "probe overhead {} over the budget of {}, and no hook is left to sample or \
                     detach",
                    percent(ratio),
                    percent(self.max_ratio)
                ))));
            }
            return Ok(None);
        };
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.steps.push(format!("{unix} {what}"));
        // The next window starts after the step, with a full bucket, so the next step is taken
        // only if the new state is over budget too.
        self.last = reading(session);
        self.bucket_ns = burst_ns(self.max_ratio);
        Ok(Some(Step(format!(
            "probe overhead {} over the budget of {}: {what}; capture tier now {}",
            percent(ratio),
            percent(self.max_ratio),
            session.capture_tier()
        ))))
    }

    /// What the probes cost the target so far, in nanoseconds: their run time and one trap per
    /// run.
    fn cost_ns(&self, stats: &ProgramStats) -> u64 {
        stats
            .run_time_ns
            .saturating_add(stats.run_count.saturating_mul(self.trap.as_nanos() as u64))
    }

    /// Takes one step; `None` when nothing is left to take. `busy`: hits per timer hook in the
    /// last window; `goroutines_busy`: goroutine hook hits.
    fn step_down(
        &self,
        session: &mut Session,
        busy: &[u64],
        goroutines_busy: u64,
        window: Duration,
    ) -> anyhow::Result<Option<String>> {
        let last = format!("in the last {} ms", window.as_millis());
        // Allocation-heavy C code makes the C heap probes the likeliest cost, and they are an
        // opt-in extra of watch: they go first, whole.
        if session.c_heap == CHeapCapture::On {
            session.detach_c_heap();
            return Ok(Some("detached the C heap probes".to_owned()));
        }
        // Reset and stop hooks; a creation-tier hook sees creations alone, whose stacks are
        // what the profile is for.
        let resets_or_stops: Vec<bool> = session
            .plan
            .hooks
            .iter()
            .map(|h| {
                matches!(h.plan.event, event::RESET | event::STOPPED)
                    && h.plan.flags & hook_flag::CREATION_ONLY == 0
            })
            .collect();
        let busiest = |eligible: &dyn Fn(usize) -> bool| {
            (0..busy.len())
                .filter(|&i| busy[i] > 0 && session.hook_attached(i) && eligible(i))
                .max_by_key(|&i| busy[i])
        };
        let samplable = |i: usize| resets_or_stops[i] && !session.stacks_sampled(i);
        if let Some(hook) = busiest(&samplable) {
            session.sample_stacks(hook, SAMPLED_STACK_RATE)?;
            return Ok(Some(format!(
                "walking the stack of {} at one hit in {SAMPLED_STACK_RATE} ({} hits {last})",
                session.hook_name(hook),
                busy[hook]
            )));
        }
        if session.goroutines == GoroutineCapture::On && goroutines_busy > 0 {
            session.detach_goroutines();
            return Ok(Some(format!(
                "detached the goroutine probes ({goroutines_busy} goroutine creations and exits \
                 {last})"
            )));
        }
        if let Some(hook) = busiest(&|_| true) {
            session.detach_hook(hook)?;
            return Ok(Some(format!(
                "detached {} ({} hits {last})",
                session.hook_name(hook),
                busy[hook]
            )));
        }
        Ok(None)
    }

    /// The profile comments: the measured ratio, the budget, the trap cost, every step taken.
    pub fn comments(&self) -> Vec<String> {
        let mut comments = vec![
            CommentKey::MaxOverheadRatio.comment(self.max_ratio),
            CommentKey::UprobeTrapNs.comment(self.trap.as_nanos()),
        ];
        if let Some(ratio) = self.ratio {
            comments.push(CommentKey::ProbeOverheadRatio.comment(format!("{ratio:.6}")));
        }
        comments.extend(
            self.steps
                .iter()
                .map(|s| CommentKey::CaptureStep.comment(s)),
        );
        comments
    }
}

/// The session's probe cost and hits now; `None` once it is detached.
fn reading(session: &Session) -> Option<Reading> {
    let (stats, hits) = session.probe_cost()?;
    Some(Reading {
        at: Instant::now(),
        stats,
        hits,
        goroutine_hits: session.goroutine_hits().unwrap_or(0),
    })
}

/// How much the bucket holds at `max_ratio`.
fn burst_ns(max_ratio: f64) -> f64 {
    BURST.as_nanos() as f64 * max_ratio
}

/// `0.42%`
fn percent(ratio: f64) -> String {
    format!("{:.3}%", ratio * 100.0)
}
