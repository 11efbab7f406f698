//! Work dealt over every core: the rules, the weight summaries, the parts of
//! a large tensor.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// `f` of every item, with the items dealt round-robin to one worker per core
/// (no more workers than items). Each worker's results come back in a vector
/// of its own, as `(item index, result)`; a worker that panicked gives back
/// nothing, on one core as on several.
pub(crate) fn deal<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Vec<Vec<(usize, R)>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, items.len().max(1));
    let f = &f;
    let work = move |w: usize| {
        (w..items.len())
            .step_by(workers)
            .map(|i| (i, f(&items[i])))
            .collect::<Vec<_>>()
    };
    if workers == 1 {
        return vec![catch_unwind(AssertUnwindSafe(|| work(0))).unwrap_or_default()];
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|w| scope.spawn(move || work(w))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
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
    }
}
