//! Work over many items shared among the cores: what a large repository's checks and plans
//! spend most of their time on is judging each of a hundred thousand objects alone.

/// Items a thread is given at least: fewer are judged where they are (the panel loads a
/// small repository on every request, and a thread costs more than a few thousand checks).
pub const MIN_ITEMS_PER_THREAD: usize = 2048;

/// `judge` of every item, in the items' order, on up to eight threads (one for every
/// [`MIN_ITEMS_PER_THREAD`] items). A panic in a thread is raised again here.
pub fn map<T: Sync, R: Send>(items: &[T], judge: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8)
        .min(items.len().div_ceil(MIN_ITEMS_PER_THREAD));
    map_on(threads, items, judge)
}

/// [`map`] on `threads` threads.
fn map_on<T: Sync, R: Send>(threads: usize, items: &[T], judge: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return items.iter().map(judge).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let judge = &judge;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().map(judge).collect::<Vec<R>>()))
            .collect();
        let mut judged = Vec::with_capacity(items.len());
        for worker in workers {
            judged.extend(
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        judged
    })
}

#[cfg(test)]
mod tests {
    /// On any number of threads (this machine's cores may be one), the results keep the
    /// items' order.
    #[test]
    fn results_keep_the_items_order() {
        for threads in [1, 2, 3, 8] {
            for len in [0, 1, 2, 1000, 5 * super::MIN_ITEMS_PER_THREAD + 7] {
                let items: Vec<usize> = (0..len).collect();
                let doubled = super::map_on(threads, &items, |item| item * 2);
                let expected: Vec<usize> = items.iter().map(|item| item * 2).collect();
                assert_eq!(doubled, expected, "{len} items on {threads} threads");
            }
        }
        let items: Vec<usize> = (0..3 * super::MIN_ITEMS_PER_THREAD).collect();
        assert_eq!(super::map(&items, |item| item + 1)[5000], 5001);
    }

    #[test]
    #[should_panic(expected = "item 3000")]
    fn a_panic_in_a_thread_is_raised_again() {
        let items: Vec<usize> = (0..3 * super::MIN_ITEMS_PER_THREAD).collect();
        super::map_on(3, &items, |&item| assert!(item != 3000, "item {item}"));
    }
}
