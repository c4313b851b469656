//! Work on every core: the one thread pool of the workspace.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;

/// Runs `work` on each of `items` on up to `threads` threads, and hands each result, with the
/// item's index, to `done` on the calling thread as it comes (in the order they finish). The
/// first error `done` returns stops the threads at their next item and is returned.
pub fn each<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
    mut done: impl FnMut(usize, R) -> Result<()>,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, items.len().max(1));
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, R)>();
        for _ in 0..threads {
            let (tx, next, work) = (tx.clone(), &next, &work);
            scope.spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(n) else { break };
                if tx.send((n, work(item))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (n, r) in rx {
            if let Err(e) = done(n, r) {
                // The others stop at their next item.
                next.store(usize::MAX / 2, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    })
}

/// `f(0..n)` on up to `threads` threads, the results in order; the first error stops the
/// others at their next item and is returned.
pub fn map<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let items: Vec<usize> = (0..n).collect();
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    each(
        &items,
        threads,
        |&i| f(i),
        |i, r| {
            results[i] = Some(r?);
            Ok(())
        },
    )?;
    Ok(results
        .into_iter()
        .map(|r| r.expect("every index ran"))
        .collect())
}

/// The number of cores (1 when it cannot be told).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_item_once_and_the_first_error_stops() {
        let items: Vec<u32> = (0..100).collect();
        let mut seen = [false; 100];
        super::each(
            &items,
            4,
            |x| x * 2,
            |n, r| {
                assert_eq!(r, items[n] * 2);
                seen[n] = true;
                Ok(())
            },
        )
        .unwrap();
        assert!(seen.iter().all(|s| *s));
        let err = super::each(
            &items,
            4,
            |x| *x,
            |_, r| {
                if r == 10 {
                    anyhow::bail!("ten")
                }
                Ok(())
            },
        );
        assert_eq!(err.unwrap_err().to_string(), "ten");
    }
}
