//! Writes two large synthetic timerscope profiles for the analyzer row of `cargo xtask bench`
//! (`timerscope diff` against `go tool pprof -diff_base`): a base and a later profile of the same
//! program in which some call sites vanished, some appeared and the rest changed their counts.
//!
//!     synthetic_profile --samples N BASE NEW
//!
//! Both use timerscope's sample types and labels. Stacks are 10 to 40 frames deep, share
//! prefixes as real call trees do, and a quarter of the locations carry an inlined frame. The
//! output is deterministic for a given N.
// An example uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use pprof::vocabulary::{LabelKey, SampleType};
use pprof::{Frame, MappingSpec, ProfileBuilder, SampleLabel};

#[derive(Parser)]
struct Args {
    /// Samples (distinct stacks) in the base profile.
    #[arg(long, default_value_t = 400_000)]
    samples: usize,
    base: PathBuf,
    new: PathBuf,
}

const MAPPING_START: u64 = 0x40_0000;
const KINDS: [&str; 6] = [
    "timer",
    "ticker",
    "afterfunc",
    "sleep",
    "netpoll",
    "runtime",
];
/// Stacks start with one of these call chains (`main.main` → ... → a handler).
const ROOT_CHAINS: u64 = 256;
const ROOT_CHAIN_DEPTH: u64 = 6;
/// Below the root chain, each location calls one of this many others.
const FANOUT: u64 = 4;
/// Functions (and as many locations) only in the stacks that vanish, or that appear.
const CHANGED_FUNCTIONS: u64 = 300;
/// Out of 1000 base stacks: vanished in the new profile, and with 10x the counts there.
const VANISHED_PER_MILLE: u64 = 40;
const REGRESSED_PER_MILLE: u64 = 20;
/// New stacks in the new profile, per 1000 base stacks.
const APPEARED_PER_MILLE: u64 = 50;

/// SplitMix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Which stacks a leaf comes from: ones in both profiles, or only in one.
#[derive(Clone, Copy)]
enum Leaf {
    Common,
    Vanished,
    Appeared,
}

/// The synthetic program: its functions and the frames at each code address. Locations are, in
/// order: the root chains, the call tree, the vanished leaves and the appeared leaves; location
/// `i` is at `MAPPING_START + 16 * i`.
struct Program {
    functions: Vec<Frame>,
    /// Frames per location, innermost first.
    locations: Vec<Vec<Frame>>,
    tree_locations: u64,
}

impl Program {
    fn new(samples: u64) -> Self {
        let mut rng = Rng(1);
        let common_functions = samples / 8 + 100;
        let functions: Vec<Frame> = (0..common_functions + 2 * CHANGED_FUNCTIONS)
            .map(|f| {
                let package = format!("example.com/fleet/svc{}/pkg{:03}", f % 7, f % 700);
                let name = format!("{package}.(*Type{}).Method{f}", (f / 700) % 40);
                Frame {
                    system_name: name.clone(),
                    function: name,
                    file: format!("/src/{package}/type{}.go", (f / 700) % 40),
                    line: 0,
                    start_line: 10 + rng.below(2000) as i64,
                }
            })
            .collect();
        let mut frame = |first: u64, count: u64| {
            let function = &functions[(first + rng.below(count)) as usize];
            let frame = Frame {
                line: function.start_line + 1 + rng.below(200) as i64,
                ..function.clone()
            };
            // A quarter of the locations have a call inlined into them.
            if rng.below(4) == 0 {
                let inlined = &functions[(first + rng.below(count)) as usize];
                let inlined = Frame {
                    line: inlined.start_line + 1 + rng.below(20) as i64,
                    ..inlined.clone()
                };
                vec![inlined, frame]
            } else {
                vec![frame]
            }
        };
        let tree_locations = samples / 2;
        let mut locations = Vec::new();
        for _ in 0..ROOT_CHAINS * ROOT_CHAIN_DEPTH + tree_locations {
            locations.push(frame(0, common_functions));
        }
        for first in [common_functions, common_functions + CHANGED_FUNCTIONS] {
            for _ in 0..CHANGED_FUNCTIONS {
                locations.push(frame(first, CHANGED_FUNCTIONS));
            }
        }
        Self {
            functions,
            locations,
            tree_locations,
        }
    }

    /// Stack `index` (leaf first): a root chain, a walk down the call tree, and for stacks only
    /// in one profile a leaf only they have.
    fn stack(&self, index: u64, leaf: Leaf) -> Vec<u64> {
        let mut rng = Rng(index.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 7);
        let chain = rng.below(ROOT_CHAINS);
        let tree_start = ROOT_CHAINS * ROOT_CHAIN_DEPTH;
        let mut stack: Vec<u64> = (0..ROOT_CHAIN_DEPTH)
            .map(|i| chain * ROOT_CHAIN_DEPTH + i)
            .collect();
        let mut caller = chain;
        for _ in 0..4 + rng.below(31) {
            let callee = Rng(caller * FANOUT + rng.below(FANOUT)).next();
            caller = tree_start + callee % self.tree_locations;
            stack.push(caller);
        }
        let changed_start = tree_start + self.tree_locations;
        match leaf {
            Leaf::Common => {}
            Leaf::Vanished => stack.push(changed_start + rng.below(CHANGED_FUNCTIONS)),
            Leaf::Appeared => {
                stack.push(changed_start + CHANGED_FUNCTIONS + rng.below(CHANGED_FUNCTIONS))
            }
        }
        stack.reverse();
        stack
    }
}

/// Values in the order of `SampleType::ALL`, and labels, of one stack.
fn sample(program: &Program, rng: &mut Rng) -> ([i64; SampleType::ALL.len()], Vec<SampleLabel>) {
    let created = 1 + rng.below(5000) as i64;
    let stopped = rng.below(created as u64 + 1) as i64;
    let fired = rng.below((created - stopped) as u64 + 1) as i64;
    let mut values = [0; SampleType::ALL.len()];
    values[..6].copy_from_slice(&[
        created,
        rng.below(created as u64) as i64,
        stopped,
        fired,
        created - stopped - fired,
        fired * rng.below(2_000_000) as i64,
    ]);
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let mut labels = vec![SampleLabel::Str {
        key: LabelKey::Kind.to_string(),
        value: kind.into(),
    }];
    if kind == "afterfunc" {
        let callback = &program.functions[rng.below(program.functions.len() as u64) as usize];
        labels.push(SampleLabel::Str {
            key: LabelKey::Callback.to_string(),
            value: callback.function.clone(),
        });
    }
    (values, labels)
}

/// Adds stack `index` with random values times `scale`.
fn add(
    builder: &mut ProfileBuilder,
    mapping: u64,
    program: &Program,
    (index, leaf): (u64, Leaf),
    scale: i64,
    rng: &mut Rng,
) {
    let locations: Vec<u64> = program
        .stack(index, leaf)
        .into_iter()
        .map(|l| {
            let frames = &program.locations[l as usize];
            builder.location(mapping, MAPPING_START + 16 * l, frames)
        })
        .collect();
    let (values, labels) = sample(program, rng);
    builder.add_sample(&locations, &values.map(|v| v * scale), &labels);
}

fn write(program: &Program, samples: u64, later: bool, path: &Path) -> Result<()> {
    let mut builder = ProfileBuilder::new(&SampleType::pairs(), SampleType::DEFAULT.as_str());
    builder
        .period_type("timers", "count", 1)
        .time_nanos(1_800_000_000_000_000_000 + i64::from(later) * 600_000_000_000)
        .duration_nanos(600_000_000_000)
        .comment("go_version=go1.25.5".into());
    let mapping = builder.add_mapping(MappingSpec {
        start: MAPPING_START,
        limit: MAPPING_START + 16 * program.locations.len() as u64,
        offset: 0,
        file: "/srv/fleet/svc".into(),
        build_id: "5ynthet1c".into(),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
    });
    let mut rng = Rng(if later { 3 } else { 2 });
    for index in 0..samples {
        let per_mille = index % 1000;
        if per_mille < VANISHED_PER_MILLE {
            if !later {
                add(
                    &mut builder,
                    mapping,
                    program,
                    (index, Leaf::Vanished),
                    1,
                    &mut rng,
                );
            }
            continue;
        }
        let regressed = later && per_mille < VANISHED_PER_MILLE + REGRESSED_PER_MILLE;
        let scale = if regressed { 10 } else { 1 };
        add(
            &mut builder,
            mapping,
            program,
            (index, Leaf::Common),
            scale,
            &mut rng,
        );
    }
    if later {
        for index in samples..samples + samples * APPEARED_PER_MILLE / 1000 {
            add(
                &mut builder,
                mapping,
                program,
                (index, Leaf::Appeared),
                1,
                &mut rng,
            );
        }
    }
    let profile = builder.build().context("building the profile")?;
    pprof::write_atomic(path, &profile).with_context(|| format!("writing {}", path.display()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let program = Program::new(args.samples as u64);
    write(&program, args.samples as u64, false, &args.base)?;
    write(&program, args.samples as u64, true, &args.new)?;
    Ok(())
}
