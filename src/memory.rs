//! Giving memory back after a burst. Which allocator runs and how it is tuned is the binary's
//! business (`src/main.rs` fixes glibc's mmap threshold and registers `malloc_trim` through
//! [`set_give_back`]; the library forbids `unsafe`). This module owns *when*: a thread that
//! wakes every second and gives memory back once the gateway has been quiet for a whole tick
//! after serving requests, or every [`MAX_INTERVAL`] while requests keep coming.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often the thread looks at the request count.
pub const TICK: Duration = Duration::from_secs(1);
/// Longest time between two give-backs while requests keep arriving.
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);

static GIVE_BACK: OnceLock<fn()> = OnceLock::new();
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Registers how to give free memory back to the system (once; later calls are ignored).
pub fn set_give_back(give_back: fn()) {
    let _ = GIVE_BACK.set(give_back);
}

/// Counts one finished request (a relaxed increment).
pub fn request_done() {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
}

/// Starts the give-back thread, when the binary registered a give-back.
pub fn start() {
    let Some(give_back) = GIVE_BACK.get().copied() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("memory-give-back".into())
        .spawn(move || {
            let mut due = Due::new(REQUESTS.load(Ordering::Relaxed), Instant::now());
            loop {
                std::thread::sleep(TICK);
                if due.tick(REQUESTS.load(Ordering::Relaxed), Instant::now()) {
                    give_back();
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("memory is not given back after bursts: cannot start its thread: {e}");
    }
}

/// When to give back: only after requests were served since the last give-back (an idle
/// gateway has nothing new to return), and then at the first quiet tick, or after
/// [`MAX_INTERVAL`] when no tick is quiet.
#[derive(Debug)]
pub struct Due {
    seen: u64,
    given_at_count: u64,
    given_at: Instant,
}

impl Due {
    pub fn new(count: u64, now: Instant) -> Due {
        Due {
            seen: count,
            given_at_count: count,
            given_at: now,
        }
    }

    /// One tick with the finished-request count `count`: whether to give back now.
    pub fn tick(&mut self, count: u64, now: Instant) -> bool {
        let quiet = count == self.seen;
        self.seen = count;
        let served = count != self.given_at_count;
        let due = served && (quiet || now.duration_since(self.given_at) >= MAX_INTERVAL);
        if due {
            self.given_at_count = count;
            self.given_at = now;
        }
        due
    }
}

#[cfg(test)]
mod tests;
