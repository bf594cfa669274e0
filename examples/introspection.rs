//! What the runtime can tell you: `corun::stats()`, a coroutine dump, and the stuck-worker
//! warning. Run it with dumps on:
//!
//! ```text
//! CORUN_DUMP=1 corun run target/release/examples/introspection
//! ```
//!
//! It starts three named coroutines that block (in a socket read, a sleep and a mutex), prints
//! the stats and its pid, and holds them blocked for a second — long enough for
//! `corun dump PID` (or `corun dump PID --json`) from another terminal. With `CORUN_DUMP=1` it
//! also sends itself SIGQUIT, the dump signal. Then it runs a coroutine that spins for 300 ms so
//! the stuck-worker guard warns about it, with the spinner's stack.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn wait_for_request(mut conn: TcpStream) -> usize {
    let mut buf = [0u8; 64];
    conn.read(&mut buf).unwrap_or(0)
}

fn nap() {
    std::thread::sleep(Duration::from_secs(3));
}

fn update_shared(counter: Arc<Mutex<u64>>) {
    *counter.lock().unwrap() += 1;
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server_side, _) = listener.accept()?;
    let counter = Arc::new(Mutex::new(0));
    let held = counter.lock().unwrap();

    let reader = corun::Builder::new()
        .name("conn-reader".into())
        .spawn(move || wait_for_request(server_side))?;
    let sleeper = corun::Builder::new().name("napper".into()).spawn(nap)?;
    let locker = corun::Builder::new().name("counter".into()).spawn({
        let counter = counter.clone();
        move || update_shared(counter)
    })?;
    std::thread::sleep(Duration::from_millis(200));
    if let Some(stats) = corun::stats() {
        println!("stats: {stats}");
    }

    println!(
        "pid {}: `corun dump {0}` shows these coroutines for the next second",
        std::process::id()
    );
    if std::env::var("CORUN_DUMP").as_deref() == Ok("1") {
        // SAFETY: raise has no preconditions; SIGQUIT prints the dump when CORUN_DUMP=1.
        unsafe { libc::raise(libc::SIGQUIT) };
    }
    std::thread::sleep(Duration::from_secs(1));
    println!("the program carries on");

    drop(held);
    (&client).write_all(b"GET /")?;
    println!("reader read {} bytes", reader.join().unwrap());
    locker.join().unwrap();
    println!("counter = {}", *counter.lock().unwrap());

    let spinner = corun::Builder::new().name("spinner".into()).spawn(|| {
        let start = Instant::now();
        let mut spins = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            spins = std::hint::black_box(spins + 1);
        }
        spins
    })?;
    spinner.join().unwrap();
    sleeper.join().unwrap();
    println!("done");
    Ok(())
}
