//! A thread-per-connection echo server in plain std code, with `corun::spawn` in place of
//! `std::thread::spawn`. Under the runtime each connection is a coroutine; without it, each is
//! an OS thread (the same binary serves as the OS-thread baseline).
//!
//! Usage: `echo_server [ADDR]` (default 127.0.0.1:7878). Prints the address it listens on.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn serve(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let listener = TcpListener::bind(&addr)?;
    println!("echo server listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                corun::spawn(move || serve(stream));
            }
            Err(err) => eprintln!("accept failed: {err}"),
        }
    }
    Ok(())
}
