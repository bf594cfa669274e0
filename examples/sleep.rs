//! Five coroutines each sleep 500 ms with plain `std::thread::sleep`; main waits 1 s. Under the
//! runtime they sleep concurrently on the workers, so all five finish well within the second.
use std::time::{Duration, Instant};

fn main() {
    let start = Instant::now();
    let handles: Vec<_> = (0..5)
        .map(|i| {
            corun::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                println!("coroutine {i} woke after {:?}", start.elapsed());
                i
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let finished = handles.iter().filter(|h| h.is_finished()).count();
    println!("after 1 s: {finished} of 5 coroutines finished");
    let sum: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("joined all; sum of ids = {sum}");
}
