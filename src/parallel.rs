//! Work dealt over every core: the rules, the weight summaries, the parts of
//! a large tensor, and the walks over a large graph's nodes.

use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `f` of every item, on one worker per core (no more workers than items).
/// Each worker takes the next few items not yet taken until none are left,
/// so a worker that drew cheap items takes more of them; put the costly items
/// first. Each worker's results come back in a vector of its own, as `(item
/// index, result)`; a worker that panicked gives back nothing, on one core as
/// on several.
pub(crate) fn deal<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Vec<Vec<(usize, R)>> {
    let workers = workers(items.len());
    // Small enough to even out the workers' last items, large enough that
    // taking them costs little next to running them.
    let batch = (items.len() / (workers * 64)).clamp(1, 256);
    let next = AtomicUsize::new(0);
    let (f, next) = (&f, &next);
    let work = move || {
        // Room for every item: the pages a worker leaves unwritten cost
        // nothing, and growing a vector of large results copies them.
        let mut done = Vec::with_capacity(items.len());
        loop {
            let start = next.fetch_add(batch, Ordering::Relaxed);
            if start >= items.len() {
                return done;
            }
            let end = (start + batch).min(items.len());
            done.extend((start..end).map(|i| (i, f(&items[i]))));
        }
    };
    if workers == 1 {
        return vec![catch_unwind(AssertUnwindSafe(work)).unwrap_or_default()];
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The fewest indices a core takes of a walk [`ranges`] shares: each index
/// is a node or a stored tensor, a fraction of a microsecond of work, and for
/// fewer, starting the core's thread would cost more than it saves.
const MIN_RUN: usize = 2048;

/// `f` of each of `0..len` cut into one run of indices per core, the runs'
/// results joined in index order. Each run has at least [`MIN_RUN`]
/// indices, so short walks take fewer cores, and one under twice that runs
/// on this thread. A panic in `f` goes on from here, as in a loop.
pub(crate) fn ranges<R: Send>(len: usize, f: impl Fn(Range<usize>) -> Vec<R> + Sync) -> Vec<R> {
    let workers = workers(len / MIN_RUN);
    if workers == 1 {
        return f(0..len);
    }
    let f = &f;
    let runs: Vec<Vec<R>> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs(len, workers)
            .map(|run| scope.spawn(move || f(run)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| resume_unwind(p)))
            .collect()
    });
    // Sized once: growing a vector of large items page by page costs more
    // than the work on a graph of many small tensors.
    let mut out = Vec::with_capacity(runs.iter().map(Vec::len).sum());
    for mut run in runs {
        out.append(&mut run);
    }
    out
}

/// `0..len` cut into `workers` runs of about equal length, in order; on many
/// cores and few items the last runs are empty, never past `len`.
fn runs(len: usize, workers: usize) -> impl Iterator<Item = Range<usize>> {
    let step = len.div_ceil(workers.max(1));
    (0..workers).map(move |w| (w * step).min(len)..((w + 1) * step).min(len))
}

/// One worker per core, and no more than `items`.
fn workers(items: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, items.max(1))
}

/// [`deal`], with the results in item order.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let mut done: Vec<(usize, R)> = deal(items, f).into_iter().flatten().collect();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_in_order() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(
            map(&items, |x| x * 2),
            (0..1000).map(|x| x * 2).collect::<Vec<_>>()
        );
        let mut seen: Vec<usize> = deal(&items, |_| ())
            .into_iter()
            .flatten()
            .map(|(i, _)| i)
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(map(&[] as &[u32], |x| *x).is_empty());
        for len in [0, 1, 7, 2 * MIN_RUN + 1, 10 * MIN_RUN] {
            let doubled = ranges(len, |r| r.map(|x| x * 2).collect());
            assert_eq!(doubled, (0..len).map(|x| x * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn runs_cover_every_index_once_whatever_the_cores() {
        for (len, workers) in [(0, 1), (5, 2), (5, 4), (4096, 128), (4097, 3), (10, 64)] {
            let runs: Vec<_> = runs(len, workers).collect();
            assert_eq!(runs.len(), workers);
            // In order, back to back, within `0..len`: slicing with them cannot panic.
            let mut next = 0;
            for r in &runs {
                assert_eq!(r.start, next, "{len} items on {workers} workers: {runs:?}");
                assert!(r.start <= r.end && r.end <= len);
                next = r.end;
            }
            assert_eq!(next, len);
        }
    }
}
