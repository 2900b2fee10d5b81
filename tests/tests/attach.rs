//! The eBPF object loads, its uprobes see a real Go process's timer calls for every Go version,
//! and its mmap tracepoint sees only the target process.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use common::{Fixture, count};
use pprof::vocabulary::Events;
use probe_common::event;
use std::sync::Arc;

use capture::{
    attach::{MapSizes, Probe},
    collect::{self, Snapshot},
    mappings::{LiveMappings, Origin},
    plan::Plan,
    symbolize::Symbolizer,
};
use gobinary::{GoBinary, process};
use timerscope_tests::{GoVersion, Variant, reference_go};

/// Loads and attaches the probes to a running fixture, as `timerscope record --pid` does.
fn attach(fixture: &Fixture) -> (Probe, Plan, Symbolizer) {
    let pid = fixture.pid();
    let exe = process::proc_path(pid, "exe");
    let target = Arc::new(GoBinary::open(&exe).expect("fixture is a Go binary"));
    let plan = Plan::for_binary(&target, Events::All).expect("supported Go version");
    let text = target.elf.text_segment().expect("text segment");
    let (_, bias) = process::text_mapping(pid, text).expect("binary mapped");
    let symbolizer = Symbolizer::new(Arc::clone(&target), bias);
    let mut probe =
        Probe::attach(&plan, None, None, &exe, pid, bias, MapSizes::default()).expect("attached");
    probe.attach_mmap().expect("mmap tracepoints attached");
    (probe, plan, symbolizer)
}

fn event_total(snapshot: &Snapshot, event: u32) -> u64 {
    snapshot
        .sites
        .iter()
        .filter(|(k, _)| k.event == event)
        .map(|(_, v)| v.count)
        .sum()
}

fn uprobes_see_timer_calls(go: &GoVersion) {
    let mut fixture = Fixture::spawn("timers", go, Variant::Normal, &["healthy", "-n", "50"]);
    let (probe, plan, _) = attach(&fixture);
    fixture.start_scenario();
    let summary = fixture.summary();
    let snapshot =
        collect::snapshot(&probe.ebpf, plan.hooks.len(), LiveMappings::default()).unwrap();
    // The runtime has timers of its own, so at least the fixture's; exactness is record's test.
    assert!(snapshot.total_events() > 0, "no probe hit at all");
    assert!(event_total(&snapshot, event::CREATED) >= count(&summary, "created") as u64);
    assert!(event_total(&snapshot, event::STOPPED) >= count(&summary, "stopped") as u64);
    assert_eq!(snapshot.total_drops(), 0, "drops: {:?}", snapshot.drops);
}
per_go_version!(uprobes_see_timer_calls, super::uprobes_see_timer_calls);

/// Bytes mapped through the raw `syscall.mmap` by calls whose stack contains `function` (the
/// runtime's own mappings, e.g. heap growth under the same function, go elsewhere).
fn mapped_bytes_at(snapshot: &Snapshot, symbolizer: &mut Symbolizer, function: &str) -> u64 {
    let mut total = 0;
    for (origin, totals) in &snapshot.mappings.totals {
        let Origin::Call { stack, .. } = origin else {
            continue;
        };
        let Some(stack) = snapshot.stacks.get(&stack.stack) else {
            continue;
        };
        let names: Vec<String> = stack
            .iter()
            .flat_map(|&pc| symbolizer.frames(pc.saturating_sub(1)).to_vec())
            .map(|f| f.function)
            .collect();
        if [function, "syscall.mmap"]
            .iter()
            .all(|wanted| names.iter().any(|n| n == wanted))
        {
            total += totals.mapped_bytes;
        }
    }
    total
}

#[test]
fn mmap_tracepoints_see_only_the_target_process() {
    let go = reference_go();
    let mut target = Fixture::spawn("mmap", go, Variant::Normal, &["leak", "-n", "4"]);
    // Same binary, busy mapping memory the whole time the target is probed.
    let mut other = Fixture::spawn("mmap", go, Variant::Normal, &["spin", "-duration", "2s"]);
    let (mut probe, plan, mut symbolizer) = attach(&target);
    other.start_scenario();
    target.start_scenario();
    let summary = target.summary();
    let other_summary = other.summary();
    assert!(
        count(&other_summary, "mapped") > 0,
        "the other process did map memory"
    );
    let mut mappings = LiveMappings::default();
    collect::drain_mmap_events(&mut probe.mmap_events, &mut mappings);
    let snapshot = collect::snapshot(&probe.ebpf, plan.hooks.len(), mappings).unwrap();

    let leaked = mapped_bytes_at(&snapshot, &mut symbolizer, "main.leakMappings");
    assert_eq!(leaked, count(&summary, "bytes_mapped") as u64);
    assert_eq!(
        mapped_bytes_at(&snapshot, &mut symbolizer, "main.spinMappings"),
        0
    );
}
