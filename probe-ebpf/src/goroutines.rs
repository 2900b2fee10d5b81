//! Goroutines created and exited, by the stack that created them. The creation probe sits where
//! the runtime has made the new `g` but not yet queued it (nothing can run it, so its exit cannot
//! be seen first); it counts the creating stack and remembers it by `g` address. The exit probe
//! counts the exiting goroutine at the stack remembered for its `g`, or, for a goroutine created
//! before the attach, at its `go` statement alone (`g.gopc`). Which register holds the `g` at each
//! probe is data from userspace (`GOROUTINE_HOOKS`).

use aya_ebpf::macros::uprobe;
use aya_ebpf::programs::ProbeContext;
use probe_common::{
    GoroutineHook, NO_STACK, SiteKey, drop, event, goroutine_hook, hook_flag, site_flag,
};

use crate::{
    maps::{
        GOROUTINE_HITS, GOROUTINE_HOOKS, GOROUTINES, SITES, bump, config, count_drop, entry,
        target_thread,
    },
    regs::{Registers, morestack_branch_taken, read_source, read_u64},
    stacks::{Frames, user_stack},
};

#[uprobe]
pub fn goroutine_created(ctx: ProbeContext) -> u32 {
    let _ = on_created(&ctx);
    0
}

#[uprobe]
pub fn goroutine_exited(ctx: ProbeContext) -> u32 {
    let _ = on_exited(&ctx);
    0
}

/// The hook's registers and the `g` it is about, once the hit is known to count.
#[inline(always)]
fn hit(ctx: &ProbeContext, hook: u32) -> Option<(Registers, u64)> {
    target_thread()?;
    let plan: &GoroutineHook = GOROUTINE_HOOKS.get(hook)?;
    let regs = Registers::of(ctx)?;
    if plan.flags & hook_flag::SKIP_IF_MORESTACK != 0 && morestack_branch_taken(&regs) {
        return None;
    }
    bump(&GOROUTINE_HITS, hook);
    let g = read_source(&regs, plan.g).filter(|&g| g != 0)?;
    Some((regs, g))
}

#[inline(always)]
fn on_created(ctx: &ProbeContext) -> Option<()> {
    let (regs, g) = hit(ctx, goroutine_hook::CREATED)?;
    // Inside the runtime's creation code, on the system stack: the frame chain leads back
    // through `systemstack` to the goroutine that ran the `go` statement.
    let site = SiteKey {
        event: event::GOROUTINE_CREATED,
        hook: goroutine_hook::CREATED,
        stack: user_stack(&regs, Frames::Go),
        ..SiteKey::default()
    };
    count(&site);
    if GOROUTINES.insert(&g, &site.stack, 0).is_err() {
        count_drop(drop::GOROUTINE_MAP_FULL);
    }
    Some(())
}

#[inline(always)]
fn on_exited(ctx: &ProbeContext) -> Option<()> {
    let (_, g) = hit(ctx, goroutine_hook::EXITED)?;
    let site = match unsafe { GOROUTINES.get(&g) } {
        Some(&stack) => SiteKey {
            event: event::GOROUTINE_EXITED,
            hook: goroutine_hook::EXITED,
            stack,
            ..SiteKey::default()
        },
        None => SiteKey {
            event: event::GOROUTINE_EXITED,
            hook: goroutine_hook::EXITED,
            stack: NO_STACK,
            caller: read_u64(g + u64::from(config().g_gopc)).unwrap_or(0),
            flags: site_flag::UNKNOWN_ORIGIN,
            ..SiteKey::default()
        },
    };
    let _ = GOROUTINES.remove(&g);
    count(&site);
    Some(())
}

#[inline(always)]
fn count(site: &SiteKey) {
    if let Some(value) = entry(&SITES, site, drop::SITE_MAP_FULL) {
        // Per-CPU value: no other program touches it meanwhile.
        unsafe { (*value).count += 1 };
    }
}
