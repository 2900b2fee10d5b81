//! `timerscope goroutines`: a quick look at a live Go process's goroutines, read from its
//! memory (no probes, no endpoint): how many each `go` statement started and what they wait for.

use capture::{preflight, process_profiles::LiveProcess};
use clap::Args;

#[derive(Debug, Args)]
pub struct GoroutinesArgs {
    /// The Go process to look at.
    #[arg(long)]
    pub pid: u32,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: GoroutinesArgs) -> anyhow::Result<u8> {
    // Reading another process's memory needs the same privilege as attaching probes to it.
    preflight::require_root("goroutines")?;
    let pid = preflight::require_process(args.pid)?;
    let census = LiveProcess::open(pid)?.goroutines()?;
    if args.json {
        let groups: Vec<serde_json::Value> = census
            .groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "created_by": g.created_by,
                    "state": g.state,
                    "count": g.count,
                })
            })
            .collect();
        let report = serde_json::json!({
            "pid": pid,
            "total": census.total,
            "torn": census.torn,
            "unreadable": census.unreadable,
            "groups": groups,
        });
        println!("{report}");
    } else {
        println!(
            "pid {pid}: {} goroutines (the runtime's own left out)",
            census.total
        );
        for g in &census.groups {
            let creator = if g.created_by.is_empty() {
                "(main or runtime)"
            } else {
                &g.created_by
            };
            println!("{:>8}  {:<20} {creator}", g.count, g.state);
        }
        if census.torn + census.unreadable > 0 {
            println!(
                "{} goroutines changed on every read and {} could not be read: counted nowhere",
                census.torn, census.unreadable
            );
        }
    }
    Ok(crate::exit::SUCCESS)
}
