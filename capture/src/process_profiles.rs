//! Go's own view of a live process, read from its memory with no probes and no endpoint: the
//! heap profile from the runtime's memory-profile buckets, symbolized like every other profile
//! and written in Go's format (`net/http/pprof`'s sample types), so `go tool pprof`,
//! `timerscope classify` and `inspect` read it as they read Go's; its goroutine profile (each
//! goroutine at its current stack, as Go's `/debug/pprof/goroutine`); and its goroutines by the
//! `go` statement that created them and what they wait for (`gobinary::runtime`).

use std::sync::Arc;

use anyhow::Context as _;
use gobinary::{
    GoBinary,
    layout::GoroutineLayout,
    process::{self, MapEntry},
    runtime::{
        RuntimeImage,
        goroutines::{self, GoroutineStack},
        heap_profile,
    },
};
use pprof::{MappingSpec, Profile, ProfileBuilder};

use crate::{
    encode::{self, Encoder},
    libraries::Libraries,
    symbolize::Symbolizer,
};

/// One running Go process, its binary read once.
pub struct LiveProcess {
    pub pid: u32,
    binary: Arc<GoBinary>,
    text_map: MapEntry,
    bias: u64,
    symbolizer: Symbolizer,
    libraries: Libraries,
    /// (device, inode) of its executable when opened, to tell a read of a process that exec'd.
    executable: Option<(u64, u64)>,
}

impl LiveProcess {
    pub fn open(pid: u32) -> anyhow::Result<Self> {
        let exe = process::proc_path(pid, "exe");
        let executable = process::executable_identity(pid);
        let binary = Arc::new(
            GoBinary::open(&exe)
                .with_context(|| format!("binary: pid {pid} ({})", exe.display()))?,
        );
        let text = binary
            .elf
            .text_segment()
            .context("binary: it has no executable segment")?;
        let (text_map, bias) = process::text_mapping(pid, text)?;
        let symbolizer = Symbolizer::new(Arc::clone(&binary), bias);
        let libraries = Libraries::new(pid, &text_map.path);
        Ok(Self {
            pid,
            binary,
            text_map,
            bias,
            symbolizer,
            libraries,
            executable,
        })
    }

    /// Fails when the process exited or exec'd another program since it was opened: a read of
    /// its memory meanwhile was of a process that is no longer the Go program, and is dropped
    /// whole rather than trusted.
    fn still_the_same(&self, what: &str) -> anyhow::Result<()> {
        let pid = self.pid;
        if !crate::preflight::process_alive(pid) {
            anyhow::bail!("{what}: pid {pid} exited while its memory was read: nothing to report");
        }
        if process::executable_identity(pid) != self.executable {
            let program = std::fs::read_link(process::proc_path(pid, "exe")).map_or_else(
                |_| "another program".to_owned(),
                |p| p.display().to_string(),
            );
            anyhow::bail!(
                "{what}: pid {pid} exec'd {program} while its memory was read: nothing to report \
                 (its Go program is gone)"
            );
        }
        Ok(())
    }

    /// Every goroutine but the runtime's own (as Go's goroutine profile leaves them out), from
    /// one read that the process outlived as the same program.
    fn user_goroutines(&self) -> anyhow::Result<goroutines::Goroutines> {
        let pid = self.pid;
        let layout = GoroutineLayout::of_binary(&self.binary)
            .with_context(|| format!("goroutines: pid {pid}"))?;
        let image = RuntimeImage {
            binary: &self.binary,
            memory: gobinary::runtime::ProcessMemory::new(pid),
            bias: self.bias,
        };
        let read = goroutines::read(&image, &layout);
        self.still_the_same("goroutines")?;
        let mut read = read.with_context(|| format!("goroutines: pid {pid}"))?;
        read.goroutines.retain(|g| {
            !image
                .function_name(g.startpc)
                .is_some_and(|start| goroutines::is_system(&start))
        });
        Ok(read)
    }

    /// The heap profile as `runtime.MemProfile` publishes it (as of the last garbage
    /// collection), in the format of Go's `/debug/pprof/heap`.
    pub fn heap_profile(&mut self) -> anyhow::Result<Profile> {
        let pid = self.pid;
        let image = RuntimeImage {
            binary: &self.binary,
            memory: gobinary::runtime::ProcessMemory::new(pid),
            bias: self.bias,
        };
        let heap = heap_profile::read(&image);
        self.still_the_same("heap profile")?;
        let heap = heap.with_context(|| format!("heap profile: pid {pid}"))?;
        if heap.rate == 0 {
            anyhow::bail!(
                "heap profile: pid {pid} does not profile its heap (runtime.MemProfileRate is 0: \
                 the linker turns it off in programs that never import runtime/pprof)"
            );
        }
        let mapping: MappingSpec =
            encode::main_mapping(&self.text_map, &self.binary, &self.symbolizer);
        let mut builder = ProfileBuilder::new(
            &[
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ],
            "inuse_space",
        );
        builder.period_type("space", "bytes", heap.rate as i64);
        builder.time_nanos(now_nanos());
        let mut encoder = Encoder::new(builder, &mut self.symbolizer, &self.libraries, &mapping);
        let rate = heap.rate as f64;
        for record in &heap.records {
            // Every frame is a return address; the encoder takes the leaf as exact, so give it
            // the call instruction of the leaf.
            let mut pcs = record.stack.clone();
            if let Some(leaf) = pcs.first_mut() {
                *leaf = leaf.saturating_sub(1);
            }
            let locations = encoder.stack(&pcs);
            let (alloc_objects, alloc_space) =
                scale(record.alloc_objects, record.alloc_bytes, rate);
            let (inuse_objects, inuse_space) =
                scale(record.inuse_objects(), record.inuse_bytes(), rate);
            encoder.builder.add_sample(
                &locations,
                &[alloc_objects, alloc_space, inuse_objects, inuse_space],
                &[],
            );
        }
        Ok(encoder.builder.build()?)
    }

    /// The goroutine profile in the format of Go's `/debug/pprof/goroutine`: one `goroutine`
    /// count per current stack (walked as `record` and `watch` walk them), the runtime's own
    /// goroutines left out. A goroutine that runs has no saved stack: it is counted under a
    /// synthetic frame. Goroutines that could not be read are counted in the comments.
    pub fn goroutine_profile(&mut self) -> anyhow::Result<Profile> {
        let read = self.user_goroutines()?;
        let mut stacks = std::collections::BTreeMap::<&GoroutineStack, i64>::new();
        for g in &read.goroutines {
            *stacks.entry(&g.stack).or_insert(0) += 1;
        }
        let mapping: MappingSpec =
            encode::main_mapping(&self.text_map, &self.binary, &self.symbolizer);
        let mut builder = ProfileBuilder::new(&[("goroutine", "count")], "goroutine");
        builder.period_type("goroutine", "count", 1);
        builder.time_nanos(now_nanos());
        if read.torn + read.unreadable > 0 {
            builder.comment(format!(
                "{} goroutines changed on every read and {} could not be read: not in the samples",
                read.torn, read.unreadable
            ));
        }
        let mut encoder = Encoder::new(builder, &mut self.symbolizer, &self.libraries, &mapping);
        for (stack, count) in stacks {
            let locations = encoder.goroutine_locations(stack);
            encoder.builder.add_sample(&locations, &[count], &[]);
        }
        Ok(encoder.builder.build()?)
    }

    /// The process's goroutines by creation site and state, leaving out the runtime's own
    /// (as Go's goroutine profile does).
    pub fn goroutines(&mut self) -> anyhow::Result<GoroutineCensus> {
        let read = self.user_goroutines()?;
        let mut groups = std::collections::BTreeMap::<(String, &str), u64>::new();
        for g in &read.goroutines {
            let created_by = crate::goroutines::created_by(&mut self.symbolizer, g);
            *groups.entry((created_by, g.state)).or_insert(0) += 1;
        }
        let mut groups: Vec<GoroutineGroup> = groups
            .into_iter()
            .map(|((created_by, state), count)| GoroutineGroup {
                created_by,
                state: state.to_owned(),
                count,
            })
            .collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.cmp(b)));
        Ok(GoroutineCensus {
            total: groups.iter().map(|g| g.count).sum(),
            groups,
            torn: read.torn,
            unreadable: read.unreadable,
        })
    }
}

/// Goroutines of one creation site in one state, as Go's goroutine dumps group them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoroutineGroup {
    /// `function (file:line)` of the `go` statement, empty where Go's dumps name none (the
    /// main goroutine, goroutines the runtime started).
    pub created_by: String,
    /// The wait reason as Go names it (`select`, `chan receive`, ...), or `running`,
    /// `runnable`, `syscall`.
    pub state: String,
    pub count: u64,
}

/// Every user goroutine of one read, grouped, and what could not be read.
#[derive(Clone, Debug, Default)]
pub struct GoroutineCensus {
    /// Largest group first.
    pub groups: Vec<GoroutineGroup>,
    pub total: u64,
    /// Goroutines whose `g` kept changing while read, or could not be read at all.
    pub torn: u64,
    pub unreadable: u64,
}

/// Go's `scaleHeapSample`: a sampled count and size as estimates of all allocations, one sample
/// being taken per `rate` bytes on average (runtime/pprof, protomem.go).
fn scale(count: u64, bytes: u64, rate: f64) -> (i64, i64) {
    if count == 0 || bytes == 0 || rate <= 1.0 {
        return (count as i64, bytes as i64);
    }
    let average = bytes as f64 / count as f64;
    let factor = 1.0 / (1.0 - (-average / rate).exp());
    (
        (count as f64 * factor) as i64,
        (bytes as f64 * factor) as i64,
    )
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_matches_go_for_small_and_large_objects() {
        // One 512 KiB object at the default rate is scaled by 1/(1-e^-1).
        let (count, bytes) = scale(1, 512 << 10, (512 << 10) as f64);
        assert_eq!(count, 1);
        assert_eq!(bytes, ((512 << 10) as f64 / (1.0 - (-1f64).exp())) as i64);
        // Rate 1 records every allocation: nothing to scale.
        assert_eq!(scale(3, 96, 1.0), (3, 96));
    }
}
