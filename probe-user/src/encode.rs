//! Stage 6, encode: a [`Snapshot`] as a pprof profile (profile.proto) that `go tool pprof`,
//! Pyroscope, Parca and speedscope read.

use std::time::{Duration, SystemTime};

use analyzer::{Frame, MappingSpec, ProfileBuilder, SampleLabel, pprof::Profile};
use probe_common::{SiteKey, drop, event, site_flag};

use crate::{collect::Snapshot, symbolize::Symbolizer};

/// Sample types, in value order. The names are part of the CLI contract.
pub const SAMPLE_TYPES: [(&str, &str); 6] = [
    ("timers_created", "count"),
    ("timers_reset", "count"),
    ("timers_stopped", "count"),
    ("timers_fired", "count"),
    ("timers_live", "count"),
    ("timer_fire_delay", "nanoseconds"),
];
pub const DEFAULT_SAMPLE_TYPE: &str = "timers_live";
const LIVE_COLUMN: usize = 4;
const DELAY_COLUMN: usize = 5;

/// Names of `probe_common::drop` reasons, as written into comments and stderr.
pub const DROP_NAMES: [&str; drop::COUNT as usize] = [
    "stack_collision",
    "stack_error",
    "site_map_full",
    "live_map_full",
    "read_fault",
    "mmap_map_full",
];

/// Facts about the recording that go into the profile's header and comments.
pub struct Recording {
    pub start: SystemTime,
    pub duration: Duration,
    /// The binary as mapped in the target: runtime range, file offset, and `has_*` flags that
    /// say what its debug info resolves.
    pub mapping: MappingSpec,
    /// `key=value` comments (Go version, timer family, channel mode, hooks, ...).
    pub comments: Vec<String>,
}

/// Where a timer event happened, from its site: the user stack with the caller the unwind
/// missed put back, or a synthetic frame for timers that predate the attach.
fn site_frames(site: &SiteKey, snapshot: &Snapshot) -> Vec<u64> {
    let Some(stack) = snapshot.stacks.get(&site.stack_id) else {
        return if site.caller == 0 {
            Vec::new()
        } else {
            vec![site.caller]
        };
    };
    let mut frames = Vec::with_capacity(stack.len() + 1);
    frames.extend(stack.first());
    // Kernels since 6.10 put the caller back themselves for uprobes on a `push %rbp`.
    if site.caller != 0 && stack.get(1) != Some(&site.caller) {
        frames.push(site.caller);
    }
    frames.extend(stack.iter().skip(1));
    frames
}

/// The `kind` label from the callback the runtime will call.
pub fn timer_kind(callback: Option<&str>, periodic: bool) -> &'static str {
    match callback {
        Some("time.sendTime") if periodic => "ticker",
        Some("time.sendTime") => "timer",
        Some("time.goFunc") => "afterfunc",
        Some("runtime.goroutineReady") => "sleep",
        Some(name) if name.starts_with("runtime.netpoll") => "netpoll",
        _ => "runtime",
    }
}

struct Encoder<'a> {
    builder: ProfileBuilder,
    symbolizer: &'a mut Symbolizer,
    mapping_id: u64,
    mapping: &'a MappingSpec,
}

impl Encoder<'_> {
    fn locations(&mut self, site: &SiteKey, snapshot: &Snapshot) -> Vec<u64> {
        if site.flags & site_flag::UNKNOWN_ORIGIN != 0 && site.event == event::FIRED {
            // The fire-time stack is the scheduler's and says nothing about the timer's origin.
            let frame = Frame {
                function: "[timer created before attach]".into(),
                system_name: "[timer created before attach]".into(),
                ..Frame::default()
            };
            return vec![self.builder.location(0, 0, &[frame])];
        }
        site_frames(site, snapshot)
            .into_iter()
            .enumerate()
            .map(|(depth, pc)| {
                // Every frame but the probed one is a return address: look up the call itself.
                let address = if depth == 0 { pc } else { pc - 1 };
                let in_binary = (self.mapping.start..self.mapping.limit).contains(&address);
                let frames = self.symbolizer.frames(address).to_vec();
                let mapping = if in_binary { self.mapping_id } else { 0 };
                self.builder.location(mapping, address, &frames)
            })
            .collect()
    }

    fn labels(&mut self, site: &SiteKey) -> Vec<SampleLabel> {
        let callback = (site.callback != 0)
            .then(|| self.symbolizer.function_name(site.callback))
            .flatten();
        let kind = timer_kind(callback.as_deref(), site.flags & site_flag::PERIODIC != 0);
        let mut labels = vec![SampleLabel::Str {
            key: "kind".into(),
            value: kind.into(),
        }];
        if kind == "afterfunc"
            && site.user_callback != 0
            && let Some(user) = self.symbolizer.function_name(site.user_callback)
        {
            labels.push(SampleLabel::Str {
                key: "callback".into(),
                value: user,
            });
        }
        labels
    }
}

pub fn encode(
    snapshot: &Snapshot,
    recording: &Recording,
    symbolizer: &mut Symbolizer,
) -> Result<Profile, analyzer::ProfileError> {
    let mut builder = ProfileBuilder::new(&SAMPLE_TYPES, DEFAULT_SAMPLE_TYPE);
    let start_nanos = recording
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    builder
        .time_nanos(i64::try_from(start_nanos).unwrap_or(i64::MAX))
        .duration_nanos(i64::try_from(recording.duration.as_nanos()).unwrap_or(i64::MAX));
    for comment in &recording.comments {
        builder.comment(comment.clone());
    }
    let drops = DROP_NAMES
        .iter()
        .zip(snapshot.drops)
        .map(|(name, n)| format!("{name}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    builder.comment(format!("drops: {drops}"));

    let mapping_id = builder.add_mapping(recording.mapping.clone());
    let mut encoder = Encoder {
        builder,
        symbolizer,
        mapping_id,
        mapping: &recording.mapping,
    };
    let mut rows = Vec::new();
    for (site, value) in &snapshot.sites {
        let mut values = [0i64; SAMPLE_TYPES.len()];
        let column = match site.event {
            event::CREATED => 0,
            event::RESET => 1,
            event::STOPPED => 2,
            event::FIRED => 3,
            _ => continue,
        };
        values[column] = value.count as i64;
        if site.event == event::FIRED {
            values[DELAY_COLUMN] = value.delay_ns as i64;
        }
        rows.push((*site, values));
    }
    for (_, live) in &snapshot.live {
        let mut values = [0i64; SAMPLE_TYPES.len()];
        values[LIVE_COLUMN] = 1;
        rows.push((live.site, values));
    }
    for (site, values) in rows {
        let locations = encoder.locations(&site, snapshot);
        let labels = encoder.labels(&site);
        encoder.builder.add_sample(&locations, &values, &labels);
    }
    encoder.builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_callback() {
        assert_eq!(timer_kind(Some("time.sendTime"), false), "timer");
        assert_eq!(timer_kind(Some("time.sendTime"), true), "ticker");
        assert_eq!(timer_kind(Some("time.goFunc"), false), "afterfunc");
        assert_eq!(timer_kind(Some("runtime.goroutineReady"), false), "sleep");
        assert_eq!(
            timer_kind(Some("runtime.netpollReadDeadline"), false),
            "netpoll"
        );
        assert_eq!(
            timer_kind(Some("runtime.(*scavengerState).init.func1"), false),
            "runtime"
        );
        assert_eq!(timer_kind(None, false), "runtime");
    }

    #[test]
    fn the_missing_caller_goes_after_the_probed_frame() {
        let mut snapshot = Snapshot::default();
        snapshot.stacks.insert(7, vec![0x1000, 0x3000, 0x4000]);
        let site = SiteKey {
            stack_id: 7,
            caller: 0x2000,
            ..SiteKey::default()
        };
        assert_eq!(
            site_frames(&site, &snapshot),
            vec![0x1000, 0x2000, 0x3000, 0x4000]
        );
        snapshot.stacks.insert(8, vec![0x1000, 0x2000, 0x3000]);
        let unwound = SiteKey {
            stack_id: 8,
            caller: 0x2000,
            ..SiteKey::default()
        };
        assert_eq!(
            site_frames(&unwound, &snapshot),
            vec![0x1000, 0x2000, 0x3000]
        );
        let lost = SiteKey {
            stack_id: -17,
            caller: 0x2000,
            ..SiteKey::default()
        };
        assert_eq!(site_frames(&lost, &snapshot), vec![0x2000]);
    }
}
