/*!
Kept-alive HTTP/1.1 connections waiting for their next request, oldest first. When every slot
of `limits.max_connections` is taken, a new connection asks the one idle longest to close and
takes its place instead of being refused (as nginx reuses idle keep-alive connections), so
callers that keep connections open without using them cannot lock other callers out.

A connection enters the queue when its request was answered and leaves it with the first byte
of its next request. One asked to close ends as if the caller had closed it: its next read is
the end of the stream, never in the middle of a request. Whichever comes first wins: a
connection asked to close drops the bytes of a request that arrive after that (the caller sees
the close HTTP clients expect of a kept-alive connection), and one whose request started is
no longer asked.
*/
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};

/// [`IdleSlot::state`]: a request under way (or none yet).
const BUSY: u8 = 0;
/// Waiting for the next request: may be asked to close.
const IDLE: u8 = 1;
/// Asked to close: never serves another request.
const SHED: u8 = 2;

/// One connection's place in [`IdleConnections`].
#[derive(Default)]
pub struct IdleSlot {
    /// Bumped each time the connection becomes idle: queue entries of an earlier idle spell
    /// are stale.
    spell: AtomicU64,
    /// [`BUSY`], [`IDLE`] or [`SHED`]; moved by compare-and-swap only, so a request starting
    /// and a new connection asking for the slot never both win.
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl IdleSlot {
    /// The connection's next request started: it can no longer be asked to close. False when
    /// it was asked first: the request's bytes are then dropped and the connection ends.
    pub fn leave(&self) -> bool {
        let moved = self
            .state
            .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire);
        moved != Err(SHED)
    }

    /// Whether the connection was asked to close; until it is, `cx` is woken when it is.
    pub fn poll_shed(&self, cx: &Context<'_>) -> bool {
        *crate::lock(&self.waker) = Some(cx.waker().clone());
        self.state.load(Ordering::Acquire) == SHED
    }
}

/// The idle connections of one listener; see the module docs.
#[derive(Default)]
pub struct IdleConnections {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<(Weak<IdleSlot>, u64)>,
    /// The length past which stale entries are dropped (amortised over the pushes).
    prune_at: usize,
}

const MIN_PRUNE_AT: usize = 64;

impl IdleConnections {
    /// `slot`'s connection answered its request and waits for the next one.
    pub fn enter(&self, slot: &Arc<IdleSlot>) {
        let spell = slot.spell.fetch_add(1, Ordering::AcqRel) + 1;
        let moved = slot
            .state
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
        if moved.is_err() {
            return; // asked to close already (a pipelined request was served meanwhile)
        }
        let mut queue = crate::lock(&self.queue);
        queue.entries.push_back((Arc::downgrade(slot), spell));
        if queue.entries.len() > queue.prune_at.max(MIN_PRUNE_AT) {
            queue
                .entries
                .retain(|(weak, spell)| current(weak, *spell).is_some());
            queue.prune_at = 2 * queue.entries.len();
        }
    }

    /// Asks the connection idle longest to close. False when no connection is idle.
    pub fn shed_oldest(&self) -> bool {
        let mut queue = crate::lock(&self.queue);
        while let Some((weak, spell)) = queue.entries.pop_front() {
            let Some(slot) = current(&weak, spell) else {
                continue;
            };
            let asked =
                slot.state
                    .compare_exchange(IDLE, SHED, Ordering::AcqRel, Ordering::Acquire);
            if asked.is_ok() {
                if let Some(waker) = crate::lock(&slot.waker).take() {
                    waker.wake();
                }
                return true;
            }
        }
        false
    }
}

/// The slot of an entry that still stands for an idle spell under way.
fn current(weak: &Weak<IdleSlot>, spell: u64) -> Option<Arc<IdleSlot>> {
    let slot = weak.upgrade()?;
    let live =
        slot.state.load(Ordering::Acquire) == IDLE && slot.spell.load(Ordering::Acquire) == spell;
    live.then_some(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Arc<IdleSlot> {
        Arc::new(IdleSlot::default())
    }

    #[test]
    fn the_connection_idle_longest_is_shed_first_and_only_while_idle() {
        let idle = IdleConnections::default();
        let (a, b, c) = (slot(), slot(), slot());
        idle.enter(&a);
        idle.enter(&b);
        idle.enter(&c);
        assert!(a.leave()); // a's next request started
        idle.enter(&a); // and was answered: a is now the most recent
        assert!(idle.shed_oldest());
        assert_eq!(b.state.load(Ordering::Acquire), SHED);
        assert!(idle.shed_oldest());
        assert_eq!(c.state.load(Ordering::Acquire), SHED);
        drop(a);
        assert!(!idle.shed_oldest(), "a dropped connection is never shed");
    }

    #[test]
    fn a_request_and_a_shed_never_both_win() {
        let idle = IdleConnections::default();
        let (a, b) = (slot(), slot());
        idle.enter(&a);
        idle.enter(&b);
        assert!(idle.shed_oldest());
        assert!(!a.leave(), "asked to close first: its request is dropped");
        idle.enter(&a); // never idle again
        assert!(b.leave());
        assert!(!idle.shed_oldest(), "b's request started first");
    }

    #[test]
    fn stale_entries_do_not_pile_up() {
        let idle = IdleConnections::default();
        let a = slot();
        for _ in 0..10_000 {
            idle.enter(&a);
            assert!(a.leave());
        }
        assert!(crate::lock(&idle.queue).entries.len() <= 2 * MIN_PRUNE_AT);
        assert!(!idle.shed_oldest());
    }
}
