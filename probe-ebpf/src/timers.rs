//! One uprobe program for every Go timer hook. The attach cookie selects the hook's plan; the
//! plan says which registers or stack slots hold the timer and its new fields, so one program
//! serves every Go version.

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns, bpf_probe_read_user_buf},
    macros::{map, uprobe},
    maps::PerCpuArray,
    programs::ProbeContext,
};
use probe_common::{
    HookPlan, LiveTimer, NO_STACK, SiteKey, TargetConfig, TimerCreation, TimerWorker, ValueSource,
    drop, event, hook_flag, reg, site_flag, source,
};

use crate::{
    maps::{
        CREATIONS, CREATIONS_ADDED, DELAY_HIST, HOOK_HITS, HOOKS, LIVE, SITES, STACK_SAMPLING,
        STACKS_SAMPLED_OUT, TIMER_WORKERS, bump, config, count_drop, entry, target_thread,
    },
    regs::{Registers, morestack_branch_taken, read_source, read_u64, register, try_read_u64},
    stacks::{Frames, user_stack},
};

#[uprobe]
pub fn timer_hook(ctx: ProbeContext) -> u32 {
    let _ = on_timer_hook(&ctx);
    0
}

#[inline(always)]
fn on_timer_hook(ctx: &ProbeContext) -> Option<()> {
    let config = config();
    target_thread()?;
    let hook = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let plan = HOOKS.get(hook)?;
    let regs = Registers::of(ctx)?;
    if plan.flags & hook_flag::SKIP_IF_MORESTACK != 0 && morestack_branch_taken(&regs) {
        return None;
    }
    bump(&HOOK_HITS, hook);
    if plan.event == event::TIMER_LOOP {
        return Some(());
    }
    if plan.event == event::CALLBACK_BEGIN || plan.event == event::CALLBACK_END {
        return timer_worker(&regs, plan);
    }
    let timer = read_source(&regs, plan.timer).filter(|&t| t != 0)?;
    let hit = Hit {
        regs: &regs,
        config: &config,
        plan,
        hook,
        timer,
        fields: read_timer_fields(timer, config.timer_fields_end),
    };
    match plan.event {
        event::FIRED => hit.fired(),
        event::STOPPED => hit.stopped(),
        _ => hit.armed(),
    }
}

/// One hit of a hook on one timer.
struct Hit<'a> {
    regs: &'a Registers,
    config: &'a TargetConfig,
    plan: &'a HookPlan,
    hook: u32,
    /// The `*runtime.timer`.
    timer: u64,
    fields: Option<&'a [u64; TIMER_WORDS]>,
}

/// The first words of the timer at hand, up to the last field the probes read, copied in one
/// read (a read's fixed cost is most of it). In a map: the BPF stack has no room left.
#[map]
static TIMER_FIELDS: PerCpuArray<[u64; TIMER_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// Every `runtime.timer` field the probes read lies in its first 128 bytes (56 in Go
/// 1.12-1.27).
const TIMER_WORDS: usize = 16;

/// This CPU's copy of the first `fields_end` bytes of `timer`; `None` when they cannot be read
/// in one piece.
#[inline(always)]
fn read_timer_fields(timer: u64, fields_end: u32) -> Option<&'static [u64; TIMER_WORDS]> {
    let words = unsafe { &mut *TIMER_FIELDS.get_ptr_mut(0)? };
    let len = fields_end as usize;
    if len > TIMER_WORDS * 8 {
        return None;
    }
    let bytes = unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) };
    unsafe { bpf_probe_read_user_buf(timer as *const u8, bytes) }.ok()?;
    Some(words)
}

impl Hit<'_> {
    #[inline(always)]
    fn field(&self, offset: u32) -> u64 {
        let word = offset as usize / 8;
        if let Some(fields) = self.fields
            && offset % 8 == 0
            && offset + 8 <= self.config.timer_fields_end
            && word < TIMER_WORDS
        {
            return fields[word];
        }
        // The timer pointer is valid (the runtime is about to use it), so an unreadable field is
        // on a fresh heap page the runtime never wrote: anonymous memory not faulted in yet,
        // which is zero. (The copy fails as a whole then; fields on a touched page still read.)
        try_read_u64(self.timer + offset as u64).unwrap_or(0)
    }

    /// A value the plan names, or the timer's field at `offset` when it names none.
    #[inline(always)]
    fn source_or_field(&self, src: ValueSource, offset: u32) -> u64 {
        match src.kind {
            source::NONE => self.field(offset),
            _ => read_source(self.regs, src).unwrap_or(0),
        }
    }

    /// Created, reset or re-armed: count it at this stack and track the timer as live.
    #[inline(always)]
    fn armed(&self) -> Option<()> {
        let (config, plan, regs) = (self.config, self.plan, self.regs);
        let funcval = read_source(regs, plan.callback)
            .filter(|&f| f != 0)
            .unwrap_or_else(|| self.field(config.timer_f));
        let event = if plan.flags & hook_flag::CREATE_IF_UNINITIALIZED == 0 {
            plan.event
        } else if self.field(config.timer_unarmed_marker) == 0 {
            event::CREATED
        } else {
            event::RESET
        };
        let when = self.source_or_field(plan.when, config.timer_when) as i64;
        let period = self.source_or_field(plan.period, config.timer_period) as i64;
        let arg_data = self.source_or_field(plan.arg_data, config.timer_arg_data);
        let flags = if period > 0 { site_flag::PERIODIC } else { 0 };
        let site = self.site(event, funcval, arg_data, flags);
        count(&site, 0);
        if event == event::CREATED {
            record_creation(self.timer, &site);
        }
        if plan.flags & hook_flag::CREATION_ONLY != 0 {
            return Some(());
        }

        match LIVE.get_ptr_mut(self.timer) {
            Some(live) if event == event::RESET => unsafe {
                (*live).when = when;
                (*live).period = period;
            },
            _ => {
                // Only where R14 holds g (Go 1.17+); elsewhere it is any register.
                let goid = if config.g_goid == 0 {
                    0
                } else {
                    register(regs, reg::R14)
                        .and_then(|g| read_u64(g + config.g_goid as u64))
                        .unwrap_or(0)
                };
                let live = LiveTimer {
                    site,
                    when,
                    period,
                    goid,
                };
                // A CREATED on a known address replaces it: in Go 1.23+ the old timer was
                // garbage collected without any hook firing and its memory reused.
                if LIVE.insert(self.timer, live, 0).is_err() {
                    count_drop(drop::LIVE_MAP_FULL);
                }
            }
        }
        Some(())
    }

    /// Stopped: count it at this stack; the timer is no longer live.
    #[inline(always)]
    fn stopped(&self) -> Option<()> {
        let config = self.config;
        let funcval = self.field(config.timer_f);
        let arg_data = self.field(config.timer_arg_data);
        let period = self.field(config.timer_period) as i64;
        let flags = if period > 0 { site_flag::PERIODIC } else { 0 };
        count(&self.site(event::STOPPED, funcval, arg_data, flags), 0);
        let _ = LIVE.remove(self.timer);
        Some(())
    }

    /// About to run the callback: count it at the timer's creation site (fire hooks run on the
    /// scheduler's stack, which says nothing about who made the timer) with how late it fires.
    #[inline(always)]
    fn fired(&self) -> Option<()> {
        let config = self.config;
        let now = read_source(self.regs, self.plan.now)? as i64;
        let when = self.field(config.timer_when) as i64;
        let period = self.field(config.timer_period) as i64;
        let delay = if when > 0 && now > when {
            now - when
        } else {
            0
        };
        let site = match unsafe { LIVE.get(self.timer) } {
            Some(live) => SiteKey {
                event: event::FIRED,
                hook: self.hook,
                ..live.site
            },
            None => {
                let funcval = self.field(config.timer_f);
                let arg_data = self.field(config.timer_arg_data);
                let periodic = if period > 0 { site_flag::PERIODIC } else { 0 };
                self.site(
                    event::FIRED,
                    funcval,
                    arg_data,
                    periodic | site_flag::UNKNOWN_ORIGIN,
                )
            }
        };
        count(&site, delay as u64);
        // Bucket b holds delays in [2^(b-1), 2^b): the bit length of the delay.
        bump(&DELAY_HIST, 64 - (delay as u64).leading_zeros());
        if period == 0 {
            let _ = LIVE.remove(self.timer);
        }
        Some(())
    }

    /// The site of an event at this probe: user stack, the caller the unwind misses, callback.
    #[inline(always)]
    fn site(&self, event: u32, funcval: u64, arg_data: u64, flags: u32) -> SiteKey {
        // The fire-time stack of a timer made before the attach is the scheduler's, which the
        // profile never shows ("[timer created before attach]"): not worth walking.
        if flags & site_flag::UNKNOWN_ORIGIN != 0 {
            return self.site_at(NO_STACK, 0, event, funcval, arg_data, flags);
        }
        let sampled_out = stack_sampled_out(self.hook);
        let (stack, flags) = if sampled_out {
            bump(&STACKS_SAMPLED_OUT, self.hook);
            (NO_STACK, flags | site_flag::STACK_SAMPLED_OUT)
        } else {
            (user_stack(self.regs, Frames::Go), flags)
        };
        // Probes sit before the function pushes its frame, so [RSP] is the return address into
        // the immediate caller, which a frame-pointer unwind skips. Not so inside the body.
        let caller = if self.plan.flags & hook_flag::IN_BODY != 0 {
            0
        } else {
            register(self.regs, reg::RSP)
                .and_then(read_u64)
                .unwrap_or(0)
        };
        self.site_at(stack, caller, event, funcval, arg_data, flags)
    }

    /// The site of an event at `stack` and `caller`: resolves the callbacks.
    #[inline(always)]
    fn site_at(
        &self,
        stack: u64,
        caller: u64,
        event: u32,
        funcval: u64,
        arg_data: u64,
        flags: u32,
    ) -> SiteKey {
        // Static funcvals live in the binary's read-only data, which may not be paged in yet;
        // then the funcval's address goes to userspace, which reads it from the file.
        let (callback, flags) = if funcval == 0 {
            (0, flags)
        } else {
            match try_read_u64(funcval) {
                Some(pc) => (pc, flags),
                None => (funcval, flags | site_flag::CALLBACK_UNREAD),
            }
        };
        // AfterFunc's timer runs time.goFunc with the user's func value as its argument.
        let is_go_func = callback != 0 && callback == self.config.go_func_pc;
        let (user_callback, flags) = if is_go_func && arg_data != 0 {
            match try_read_u64(arg_data) {
                Some(pc) => (pc, flags),
                None => (arg_data, flags | site_flag::USER_CALLBACK_UNREAD),
            }
        } else {
            (0, flags)
        };
        SiteKey {
            event,
            hook: self.hook,
            stack,
            caller,
            callback,
            user_callback,
            flags,
            _pad: 0,
        }
    }
}

/// Whether this hit of `hook` skips its stack walk: with a sampling rate `n` > 1, all hits but
/// every `n`-th on this CPU (the per-CPU hit count, already bumped for this hit).
#[inline(always)]
fn stack_sampled_out(hook: u32) -> bool {
    let rate = STACK_SAMPLING.get(hook).copied().unwrap_or(0);
    if rate <= 1 {
        return false;
    }
    let hits = HOOK_HITS.get(hook).copied().unwrap_or(0);
    hits % u64::from(rate) != 0
}

/// A timer goroutine starts or finishes running a callback: its busy time (Go <= 1.13).
#[inline(always)]
fn timer_worker(regs: &Registers, plan: &HookPlan) -> Option<()> {
    let worker = read_source(regs, plan.worker)?;
    let now = unsafe { bpf_ktime_get_ns() };
    if TIMER_WORKERS.get_ptr_mut(&worker).is_none() {
        // One goroutine per key, so no other CPU inserts it meanwhile.
        let _ = TIMER_WORKERS.insert(&worker, &TimerWorker::default(), 0);
    }
    let state = TIMER_WORKERS.get_ptr_mut(&worker)?;
    unsafe {
        if plan.event == event::CALLBACK_BEGIN {
            (*state).running_since = now;
        } else if (*state).running_since != 0 {
            (*state).busy_ns += now.saturating_sub((*state).running_since);
            (*state).callbacks += 1;
            (*state).running_since = 0;
        }
    }
    Some(())
}

/// Remembers where `timer` was created, for the snapshot of pending timers (creation is rare, so
/// the extra map update stays off the hot reset and stop paths).
#[inline(always)]
fn record_creation(timer: u64, site: &SiteKey) {
    let creation = TimerCreation {
        stack: site.stack,
        caller: site.caller,
        hook: site.hook,
        flags: site.flags,
    };
    if CREATIONS
        .insert(timer, creation, BPF_NOEXIST as u64)
        .is_ok()
    {
        bump(&CREATIONS_ADDED, 0);
    } else {
        // The address held an earlier timer: Go 1.23+ reuses a collected timer's memory.
        let _ = CREATIONS.insert(timer, creation, 0);
    }
}

#[inline(always)]
fn count(site: &SiteKey, delay_ns: u64) {
    if let Some(value) = entry(&SITES, site, drop::SITE_MAP_FULL) {
        unsafe {
            (*value).count += 1;
            (*value).delay_ns += delay_ns;
        }
    }
}
