//! A hello-world TCP server: every accepted connection gets its own coroutine, written exactly
//! as one would with `std::thread::spawn`. To be self-checking, `main` then connects 100
//! clients (also coroutines) and checks each greeting.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");

    corun::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.expect("accept failed");
            corun::spawn(move || {
                let _ = stream.write_all(b"hello, world\n");
            });
        }
    });

    let clients: Vec<_> = (0..100)
        .map(|_| {
            corun::spawn(move || {
                let mut stream = TcpStream::connect(addr)?;
                let mut greeting = String::new();
                stream.read_to_string(&mut greeting)?;
                Ok::<_, std::io::Error>(greeting)
            })
        })
        .collect();
    let mut greeted = 0;
    for client in clients {
        let greeting = client.join().expect("client panicked")?;
        assert_eq!(greeting, "hello, world\n");
        greeted += 1;
    }
    println!("{greeted} clients greeted with \"hello, world\"");
    Ok(())
}
