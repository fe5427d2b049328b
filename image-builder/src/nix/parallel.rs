//! Bounded parallel map over a slice, on scoped threads.
//!
//! Downloads block on the network and on decompression, so plain threads are the simplest way to
//! bound how many run at once without pulling an async runtime into the builder's API.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::Error;

/// Apply `f` to every item with at most `parallelism` calls in flight; results keep item order.
///
/// After the first failure no new items start; the error reported is the one of the earliest item
/// that failed, so the message does not depend on thread timing.
pub(crate) fn try_map<T, U, F>(items: &[T], parallelism: usize, f: F) -> Result<Vec<U>, Error>
where
    T: Sync,
    U: Send,
    F: Fn(&T) -> Result<U, Error> + Sync,
{
    let workers = parallelism.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Mutex<Vec<Option<Result<U, Error>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    // A poisoned lock only means another worker panicked; its slot stays None
                    // and the panic propagates out of `scope` anyway.
                    if let Ok(mut slots) = slots.lock() {
                        slots[i] = Some(result);
                    }
                }
            });
        }
    });
    let slots = slots.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::with_capacity(items.len());
    for slot in slots {
        match slot {
            Some(Ok(u)) => out.push(u),
            Some(Err(e)) => return Err(e),
            // Skipped after an earlier failure, which the loop returns first.
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn keeps_order_and_bounds_concurrency() {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<u32> = (0..16).collect();
        let out = try_map(&items, 3, |&i| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(i * 2)
        })
        .expect("map");
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(peak.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn reports_the_earliest_failure() {
        let items: Vec<u32> = (0..8).collect();
        let e = try_map(&items, 4, |&i| {
            if i >= 5 {
                Err(Error::io(
                    "item",
                    format!("/{i}"),
                    std::io::Error::other("x"),
                ))
            } else {
                Ok(i)
            }
        })
        .expect_err("fails");
        assert!(e.to_string().contains("/5"), "{e}");
    }
}
