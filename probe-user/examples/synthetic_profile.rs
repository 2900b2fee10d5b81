//! Writes two large synthetic timerscope profiles for the analyzer row of `cargo xtask bench`
//! (`timerscope diff` against `go tool pprof -diff_base`): a base and a later profile of the same
//! program in which some call sites vanished, some appeared and the rest changed their counts.
//!
//!     synthetic_profile --samples N BASE NEW
//!
//! Both use timerscope's sample types and labels. Stacks are 10 to 40 frames deep, share
//! prefixes as real call trees do, and a quarter of the locations carry an inlined frame. The
//! output is deterministic for a given N.

use std::path::PathBuf;

use analyzer::{Frame, MappingSpec, ProfileBuilder, SampleLabel};
use anyhow::{Context, Result};
use clap::Parser;
use probe_user::encode::{DEFAULT_SAMPLE_TYPE, SAMPLE_TYPES};

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

/// The synthetic program: its functions and the frames at each code address.
struct Program {
    functions: Vec<Frame>,
    /// Frames per location (innermost first); location `i` is at `MAPPING_START + 16 * i`.
    locations: Vec<Vec<Frame>>,
}

impl Program {
    fn new(function_count: u64, location_count: u64) -> Self {
        let mut rng = Rng(1);
        let functions = (0..function_count)
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
            .collect::<Vec<_>>();
        let frame = |rng: &mut Rng| {
            let function = &functions[rng.below(function_count) as usize];
            Frame {
                line: function.start_line + 1 + rng.below(200) as i64,
                ..function.clone()
            }
        };
        let locations = (0..location_count)
            .map(|_| {
                if rng.below(4) == 0 {
                    vec![frame(&mut rng), frame(&mut rng)]
                } else {
                    vec![frame(&mut rng)]
                }
            })
            .collect();
        Self {
            functions,
            locations,
        }
    }

    /// Stack `index` (leaf first): a root chain, then random frames.
    fn stack(&self, index: u64) -> Vec<u64> {
        let mut rng = Rng(index.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 7);
        let chain = rng.below(ROOT_CHAINS);
        let mut stack: Vec<u64> = (0..ROOT_CHAIN_DEPTH)
            .map(|i| chain * ROOT_CHAIN_DEPTH + i)
            .collect();
        let rest = self.locations.len() as u64 - ROOT_CHAINS * ROOT_CHAIN_DEPTH;
        let depth = 4 + rng.below(31);
        stack.extend((0..depth).map(|_| ROOT_CHAINS * ROOT_CHAIN_DEPTH + rng.below(rest)));
        stack.reverse();
        stack
    }
}

/// Values in the order of `SAMPLE_TYPES`, and labels, of one stack.
fn sample(program: &Program, rng: &mut Rng) -> ([i64; SAMPLE_TYPES.len()], Vec<SampleLabel>) {
    let created = 1 + rng.below(5000) as i64;
    let stopped = rng.below(created as u64 + 1) as i64;
    let fired = rng.below((created - stopped) as u64 + 1) as i64;
    let mut values = [0; SAMPLE_TYPES.len()];
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
        key: "kind".into(),
        value: kind.into(),
    }];
    if kind == "afterfunc" {
        let callback = &program.functions[rng.below(program.functions.len() as u64) as usize];
        labels.push(SampleLabel::Str {
            key: "callback".into(),
            value: callback.function.clone(),
        });
    }
    (values, labels)
}

fn add(
    builder: &mut ProfileBuilder,
    mapping: u64,
    program: &Program,
    stack: &[u64],
    rng: &mut Rng,
) {
    let locations: Vec<u64> = stack
        .iter()
        .map(|&l| {
            builder.location(
                mapping,
                MAPPING_START + 16 * l,
                &program.locations[l as usize],
            )
        })
        .collect();
    let (values, labels) = sample(program, rng);
    builder.add_sample(&locations, &values, &labels);
}

fn write(program: &Program, samples: u64, later: bool, path: &PathBuf) -> Result<()> {
    let mut builder = ProfileBuilder::new(&SAMPLE_TYPES, DEFAULT_SAMPLE_TYPE);
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
        if later && per_mille < VANISHED_PER_MILLE {
            continue;
        }
        let stack = program.stack(index);
        add(&mut builder, mapping, program, &stack, &mut rng);
        if later && per_mille < VANISHED_PER_MILLE + REGRESSED_PER_MILLE {
            // The same stack again: its values add up, as a regression's would.
            for _ in 0..9 {
                add(&mut builder, mapping, program, &stack, &mut rng);
            }
        }
    }
    if later {
        for index in 0..samples * APPEARED_PER_MILLE / 1000 {
            add(
                &mut builder,
                mapping,
                program,
                &program.stack(samples + index),
                &mut rng,
            );
        }
    }
    let profile = builder.build().context("building the profile")?;
    analyzer::write_atomic(path, &profile).with_context(|| format!("writing {}", path.display()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let samples = args.samples as u64;
    let program = Program::new(
        samples / 8 + 100,
        samples / 2 + ROOT_CHAINS * ROOT_CHAIN_DEPTH,
    );
    write(&program, samples, false, &args.base)?;
    write(&program, samples, true, &args.new)?;
    Ok(())
}
