//! The few lines `record` prints at the end: where the live timers were created, by the first
//! frame in the program's own code (not the runtime or standard library).

use std::collections::HashMap;

use analyzer::gosym::is_user_function;
use pprof::{
    Profile, ResolvedProfile,
    vocabulary::{LabelKey, SampleType, TimerKind},
};

/// Live timers created at one user-code line, of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSite {
    pub function: String,
    pub file: String,
    pub line: i64,
    pub kind: String,
    pub live: i64,
}

/// The `limit` user-code sites with the most live timers, most first.
pub fn top_live_sites(profile: &Profile, limit: usize) -> Vec<LiveSite> {
    let resolved = ResolvedProfile::new(profile);
    let Some(live) = resolved.column(SampleType::TimersLive) else {
        return Vec::new();
    };
    let mut sites: HashMap<(String, String, i64, String), i64> = HashMap::new();
    for sample in resolved.samples.iter().filter(|s| s.values[live] > 0) {
        let Some(frame) = resolved
            .stack(sample)
            .find(|f| is_user_function(&f.function))
        else {
            continue;
        };
        let kind = sample
            .str_label(LabelKey::Kind)
            .unwrap_or(TimerKind::Runtime.as_str())
            .to_owned();
        let key = (frame.function.clone(), frame.file.clone(), frame.line, kind);
        *sites.entry(key).or_default() += sample.values[live];
    }
    let mut sites: Vec<LiveSite> = sites
        .into_iter()
        .map(|((function, file, line, kind), live)| LiveSite {
            function,
            file,
            line,
            kind,
            live,
        })
        .collect();
    sites.sort_by(|a, b| {
        b.live
            .cmp(&a.live)
            .then_with(|| a.function.cmp(&b.function))
    });
    sites.truncate(limit);
    sites
}

impl std::fmt::Display for LiveSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.rsplit('/').next().unwrap_or(&self.file);
        write!(
            f,
            "{:>8} live {:<9} {} ({file}:{})",
            self.live, self.kind, self.function, self.line
        )
    }
}
