//! Echo load generator: N concurrent connections (each a coroutine), each sending R messages of
//! 64 bytes and checking every byte of the echo. Reports round trips per second.
//!
//! Usage: `echo_client ADDR [CONNECTIONS=100] [ROUNDS=100]`.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .expect("usage: echo_client ADDR [CONNECTIONS] [ROUNDS]");
    let connections: usize = args.next().map_or(100, |s| s.parse().expect("CONNECTIONS"));
    let rounds: usize = args.next().map_or(100, |s| s.parse().expect("ROUNDS"));

    let start = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|c| {
            let addr = addr.clone();
            corun::spawn(move || -> std::io::Result<usize> {
                let mut stream = TcpStream::connect(&addr)?;
                stream.set_nodelay(true)?;
                let mut message = [0u8; 64];
                let mut echo = [0u8; 64];
                for r in 0..rounds {
                    for (i, byte) in message.iter_mut().enumerate() {
                        *byte = (c + r + i) as u8;
                    }
                    stream.write_all(&message)?;
                    stream.read_exact(&mut echo)?;
                    if echo != message {
                        return Err(std::io::Error::other(format!(
                            "connection {c}, round {r}: echo differs"
                        )));
                    }
                }
                Ok(rounds)
            })
        })
        .collect();
    let mut total = 0;
    let mut failed = 0;
    for client in clients {
        match client.join() {
            Ok(Ok(n)) => total += n,
            Ok(Err(err)) => {
                failed += 1;
                eprintln!("client failed: {err}");
            }
            Err(_) => failed += 1,
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{connections} connections x {rounds} round trips: {total} verified in {:.2?} ({:.0} round trips/s)",
        elapsed,
        total as f64 / elapsed.as_secs_f64()
    );
    if failed > 0 {
        eprintln!("{failed} connections failed");
        std::process::exit(1);
    }
}
