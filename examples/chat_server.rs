//! A thread-per-client chat server in unchanged std style: a coroutine per client reads lines
//! and sends them over an `mpsc` channel to a broadcaster thread, which writes each line to
//! every other client from a shared `Arc<Mutex<…>>` member list.
//!
//! To be self-checking, `main` then runs scripted clients (coroutines too): each waits for its
//! welcome, meets the others at a `std::sync::Barrier`, sends its lines, and checks that it
//! receives every line every other client sent.
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Barrier, Mutex};

const CLIENTS: usize = 10;
const LINES: usize = 20;

enum Event {
    Joined(usize, TcpStream),
    Line(usize, String),
    Left(usize),
}

fn broadcaster(events: mpsc::Receiver<Event>, members: Arc<Mutex<Vec<(usize, TcpStream)>>>) {
    for event in events {
        match event {
            Event::Joined(id, mut stream) => {
                let _ = writeln!(stream, "welcome {id}");
                members.lock().unwrap().push((id, stream));
            }
            Event::Line(from, text) => {
                for (id, stream) in members.lock().unwrap().iter_mut() {
                    if *id != from {
                        let _ = writeln!(stream, "{from}: {text}");
                    }
                }
            }
            Event::Left(id) => members.lock().unwrap().retain(|(member, _)| *member != id),
        }
    }
}

fn serve(listener: TcpListener) {
    let members = Arc::new(Mutex::new(Vec::new()));
    let (events, inbox) = mpsc::channel();
    std::thread::spawn(move || broadcaster(inbox, members));
    for (id, stream) in listener.incoming().enumerate() {
        let stream = stream.expect("accept failed");
        let events = events.clone();
        events
            .send(Event::Joined(id, stream.try_clone().expect("clone")))
            .expect("broadcaster gone");
        corun::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if events.send(Event::Line(id, line)).is_err() {
                    break;
                }
            }
            let _ = events.send(Event::Left(id));
        });
    }
}

fn client(addr: SocketAddr, barrier: Arc<Barrier>) -> std::io::Result<usize> {
    let mut stream = TcpStream::connect(addr)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut welcome = String::new();
    reader.read_line(&mut welcome)?;
    let me: usize = welcome
        .trim()
        .strip_prefix("welcome ")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad welcome {welcome:?}")))?;
    barrier.wait(); // every client is a member now
    for n in 0..LINES {
        writeln!(stream, "line {n} from {me}")?;
    }
    let mut expected = HashSet::new();
    let mut received = 0;
    let mut line = String::new();
    while received < (CLIENTS - 1) * LINES {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("server closed the connection"));
        }
        let (from, text) = line.trim_end().split_once(": ").expect("`from: text`");
        let from: usize = from.parse().expect("sender id");
        assert_ne!(from, me, "a client received its own line");
        assert_eq!(
            text,
            format!("line {} from {from}", text.split(' ').nth(1).unwrap())
        );
        assert!(expected.insert(text.to_owned()), "duplicate line {text:?}");
        received += 1;
    }
    Ok(received)
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("chat server on {addr}");
    corun::spawn(move || serve(listener));

    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let barrier = barrier.clone();
            corun::spawn(move || client(addr, barrier))
        })
        .collect();
    let mut total = 0;
    for handle in clients {
        total += handle.join().expect("client panicked")?;
    }
    println!(
        "{CLIENTS} clients each received all {} lines from the others ({total} in all)",
        (CLIENTS - 1) * LINES
    );
    Ok(())
}
