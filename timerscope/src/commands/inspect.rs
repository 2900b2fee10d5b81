//! `timerscope inspect`: scheduled inspection of Go services through their own
//! `net/http/pprof` endpoints, or of local Go processes through their memory (`pid` and `exe`
//! targets), one round per run.

use std::path::PathBuf;

use analyzer::classify::Severity;
use analyzer::diff::DEFAULT_THRESHOLD_PP;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
#[command(subcommand_negates_reqs = true)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub action: Option<InspectAction>,
    /// The services to inspect: a TOML (*.toml) or YAML (*.yaml, *.yml) file.
    #[arg(long, required = true)]
    pub targets: Option<PathBuf>,
    /// Where rounds are stored [default: $XDG_STATE_HOME/timerscope/inspect, else
    /// ~/.local/state/timerscope/inspect].
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
    /// Length of each CPU profile in seconds.
    #[arg(long, default_value_t = inspect::DEFAULT_CPU_SECONDS,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub cpu_seconds: u32,
    /// Flag functions whose share of a profile moved by more than this many percentage points
    /// since the baseline or the previous round (a service's own `threshold` wins).
    #[arg(long, default_value_t = DEFAULT_THRESHOLD_PP)]
    pub threshold: f64,
    /// Rounds kept per service; older ones are deleted, except the pinned baseline.
    #[arg(long, default_value_t = inspect::DEFAULT_KEEP_ROUNDS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    /// Print JSON instead of tables (with every trend's points).
    #[arg(long)]
    pub json: bool,
    /// Also write this round's HTML report (as `timerscope report`) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Exit with status 3 when a finding, share shift or growth of this severity or higher exists.
    #[arg(long, value_name = "low|medium|high")]
    pub fail_on: Option<Severity>,
    #[command(flatten)]
    pub size: super::ProfileSizeArgs,
    /// Follow redirects to other hosts (a redirect within the service's own host and port is
    /// always followed).
    #[arg(long)]
    pub follow_redirects: bool,
    /// A header for every pull, `Name: value`; the value `@PATH` reads a file, `env:VAR` an
    /// environment variable (keeps secrets out of ps), e.g. `Authorization: env:PPROF_TOKEN`.
    /// Repeatable. Basic auth comes from a URL's `user:password@`.
    #[arg(long, value_name = "HEADER", value_parser = inspect::client::Header::parse)]
    pub header: Vec<inspect::client::Header>,
    /// PEM certificates to trust for https, besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// `pid` and `exe` targets' profiles, read from the process's memory as `timerscope goroutines`
/// and `record` read it.
struct FromMemory;

impl inspect::local::ProcessProfiles for FromMemory {
    fn read(
        &self,
        pid: u32,
        kind: inspect::targets::ProfileKind,
    ) -> Result<pprof::Profile, inspect::local::BoxError> {
        use inspect::targets::ProfileKind;
        let mut process =
            capture::process_profiles::LiveProcess::open(pid).map_err(|e| format!("{e:#}"))?;
        let profile = match kind {
            ProfileKind::Heap => process.heap_profile(),
            ProfileKind::Goroutine => process.goroutine_profile(),
            ProfileKind::Cpu | ProfileKind::Block | ProfileKind::Mutex => {
                unreachable!("targets refuse {kind} profiles of local processes")
            }
        };
        // One line, as the rest of the report: the chain of contexts.
        profile.map_err(|e| format!("{e:#}").into())
    }
}

#[derive(Debug, Subcommand)]
pub enum InspectAction {
    /// Choose the round each later round is compared with.
    #[command(subcommand)]
    Baseline(BaselineAction),
}

#[derive(Debug, Subcommand)]
pub enum BaselineAction {
    /// Pin a stored round of SERVICE as its baseline (without one, the oldest stored round is
    /// used).
    ///
    /// Example:
    ///   timerscope inspect --store /var/lib/timerscope baseline set checkout 20260127T1015
    #[command(verbatim_doc_comment)]
    Set {
        /// The service's name in the targets file.
        service: String,
        /// The round: its timestamp as in the report (YYYYmmddTHHMMSS.mmmZ), RFC 3339, or a
        /// unique prefix [default: the newest round].
        timestamp: Option<String>,
    },
}

pub fn run(args: InspectArgs) -> anyhow::Result<u8> {
    let store = args.store.unwrap_or_else(inspect::default_store_dir);
    match (args.action, args.targets) {
        (Some(InspectAction::Baseline(BaselineAction::Set { service, timestamp })), _) => {
            let round = inspect::set_baseline(&store, &service, timestamp.as_deref())?;
            let profiles: Vec<&str> = round.profiles.keys().map(|k| k.name()).collect();
            println!(
                "{service}: baseline pinned to round {} ({}) in {}",
                round.timestamp,
                profiles.join(", "),
                store.display()
            );
            Ok(crate::exit::SUCCESS)
        }
        (None, Some(targets)) => {
            let report = inspect::run_inspect(
                &inspect::InspectOptions {
                    targets,
                    store,
                    pull: inspect::pull::PullSettings {
                        cpu_seconds: args.cpu_seconds,
                        limits: (&args.size).into(),
                        follow_redirects: args.follow_redirects,
                        client: inspect::client::ClientSettings {
                            ca_file: args.ca_file,
                            headers: args.header,
                        },
                        ..Default::default()
                    },
                    threshold_pp: args.threshold,
                    keep_rounds: usize::try_from(args.keep).unwrap_or(usize::MAX),
                },
                &FromMemory,
            )?;
            crate::render::print_report(&report, args.json);
            if let Some(path) = &args.html {
                let page = super::report::inspect_report(&report)?;
                super::report::write_html(path, &page)?;
            }
            let failed = args.fail_on.is_some_and(|level| report.fails(level));
            Ok(crate::exit::findings_status(failed))
        }
        (None, None) => unreachable!("clap requires --targets without a subcommand"),
    }
}
