//! The file descriptors the cases run against: one constructor per kind, each leaving the fd
//! in a state where libc answers at once (data waiting, an error, end of file) or within the
//! 20 ms receive timeout every socket gets.

use std::ffi::CString;

use libc::c_int;

/// Every kind of fd the matrix covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// -1.
    Minus1,
    /// A number nothing has opened.
    Unused,
    /// An fd that was just closed.
    Closed,
    /// A regular file holding "hello".
    File,
    /// A directory.
    Dir,
    /// The read end of a pipe with "hello" in it (write end kept open).
    PipeRead,
    /// The read end of an empty pipe, `O_NONBLOCK` (the user's choice).
    PipeReadNonblocking,
    /// The read end of a pipe whose write end is closed (end of file).
    PipeEof,
    /// The write end of a pipe (read end kept open).
    PipeWrite,
    /// An eventfd with counter 1.
    EventFd,
    /// The master of a pty, "hi\n" written by the slave.
    Pty,
    /// A TCP socket, not connected.
    TcpFresh,
    /// A listening TCP socket, nothing pending.
    TcpListening,
    /// A listening TCP socket with one connection pending.
    TcpPending,
    /// A TCP socket whose connect is in progress (blocking again, as the user left it): its
    /// listener's accept queue is full, so the SYN goes unanswered.
    TcpConnecting,
    /// A connected TCP socket, "hello" sent by the peer.
    TcpConnected,
    /// A connected TCP socket with nothing to read.
    TcpIdle,
    /// A connected TCP socket whose peer closed (end of file).
    TcpPeerClosed,
    /// A connected TCP socket whose peer reset the connection.
    TcpReset,
    /// A connected TCP socket shut down both ways by us.
    TcpShutdown,
    /// One end of a Unix stream socket pair, "hello" sent by the other.
    UnixPair,
    /// A bound UDP socket with one datagram ("hello") waiting.
    Udp,
}

pub const KINDS: [Kind; 22] = [
    Kind::Minus1,
    Kind::Unused,
    Kind::Closed,
    Kind::File,
    Kind::Dir,
    Kind::PipeRead,
    Kind::PipeReadNonblocking,
    Kind::PipeEof,
    Kind::PipeWrite,
    Kind::EventFd,
    Kind::Pty,
    Kind::TcpFresh,
    Kind::TcpListening,
    Kind::TcpPending,
    Kind::TcpConnecting,
    Kind::TcpConnected,
    Kind::TcpIdle,
    Kind::TcpPeerClosed,
    Kind::TcpReset,
    Kind::TcpShutdown,
    Kind::UnixPair,
    Kind::Udp,
];

/// An fd of some kind and everything that keeps it in that state; closes it all when dropped.
pub struct Fixture {
    pub fd: c_int,
    keep: Vec<c_int>,
    /// A TCP port with a listener behind it (for `connect`), if the fixture has one.
    pub port: u16,
    /// Whether `fd` is this fixture's to close.
    owned: std::cell::Cell<bool>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let own = self.owned.get().then_some(self.fd);
        for &fd in self.keep.iter().chain(own.iter()) {
            if fd >= 0 {
                // SAFETY: fds this fixture opened.
                unsafe { libc::close(fd) };
            }
        }
    }
}

fn check(rc: c_int, what: &str) -> c_int {
    assert!(
        rc >= 0,
        "fixture: {what} failed: {}",
        std::io::Error::last_os_error()
    );
    rc
}

fn write_all(fd: c_int, bytes: &[u8]) {
    // SAFETY: a valid buffer.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n, bytes.len() as isize, "fixture: write failed");
}

/// A 20 ms receive and send timeout, so that a call that would wait returns `EAGAIN` soon.
pub fn short_timeouts(fd: c_int) {
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: a valid timeval of the size given.
        check(
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    option,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            },
            "setsockopt timeout",
        );
    }
}

fn tcp_socket() -> c_int {
    // SAFETY: plain socket creation.
    let fd = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) },
        "socket",
    );
    short_timeouts(fd);
    fd
}

pub fn loopback(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A listening socket on a fresh loopback port.
fn listener() -> (c_int, u16) {
    let fd = tcp_socket();
    let addr = loopback(0);
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: a valid address of the size given.
    check(
        unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len) },
        "bind",
    );
    // SAFETY: a bound socket.
    check(unsafe { libc::listen(fd, 16) }, "listen");
    let mut bound: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut blen = len;
    // SAFETY: valid out-pointers.
    check(
        unsafe { libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in).cast(), &mut blen) },
        "getsockname",
    );
    (fd, u16::from_be(bound.sin_port))
}

fn connect_to(fd: c_int, port: u16) -> c_int {
    let addr = loopback(port);
    // SAFETY: a valid address of the size given.
    unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    }
}

/// (client, server) of a loopback TCP connection, and the listener's port.
fn tcp_pair() -> (c_int, c_int, c_int, u16) {
    let (listen, port) = listener();
    let client = tcp_socket();
    check(connect_to(client, port), "connect");
    // SAFETY: a listener with a connection pending.
    let server = check(
        unsafe { libc::accept(listen, std::ptr::null_mut(), std::ptr::null_mut()) },
        "accept",
    );
    (client, server, listen, port)
}

fn pipe() -> (c_int, c_int) {
    let mut fds = [0; 2];
    // SAFETY: room for two fds.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) }, "pipe");
    (fds[0], fds[1])
}

impl Fixture {
    /// Builds an fd of `kind`.
    pub fn new(kind: Kind) -> Fixture {
        let simple = |fd| Fixture {
            fd,
            keep: Vec::new(),
            port: 0,
            owned: std::cell::Cell::new(true),
        };
        match kind {
            Kind::Minus1 => Fixture::not_owned(-1),
            Kind::Unused => Fixture::not_owned(900),
            Kind::Closed => {
                let (r, w) = pipe();
                // SAFETY: fds we just opened.
                unsafe { libc::close(r) };
                // SAFETY: as above.
                unsafe { libc::close(w) };
                Fixture::not_owned(r)
            }
            Kind::File => {
                let path = std::env::temp_dir().join(format!(
                    "corun-fidelity-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                std::fs::write(&path, "hello").unwrap();
                let c = CString::new(path.to_str().unwrap()).unwrap();
                // SAFETY: a NUL-terminated path.
                let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_RDWR) }, "open");
                let _ = std::fs::remove_file(&path);
                simple(fd)
            }
            Kind::Dir => {
                // SAFETY: a NUL-terminated path.
                simple(check(
                    unsafe { libc::open(c"/tmp".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) },
                    "open dir",
                ))
            }
            Kind::PipeRead => {
                let (r, w) = pipe();
                write_all(w, b"hello");
                Fixture {
                    fd: r,
                    keep: vec![w],
                    port: 0,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::PipeReadNonblocking => {
                let (r, w) = pipe();
                // SAFETY: an fd we own.
                check(
                    unsafe { libc::fcntl(r, libc::F_SETFL, libc::O_NONBLOCK) },
                    "fcntl",
                );
                Fixture {
                    fd: r,
                    keep: vec![w],
                    port: 0,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::PipeEof => {
                let (r, w) = pipe();
                // SAFETY: an fd we own.
                unsafe { libc::close(w) };
                simple(r)
            }
            Kind::PipeWrite => {
                let (r, w) = pipe();
                Fixture {
                    fd: w,
                    keep: vec![r],
                    port: 0,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::EventFd => simple(check(unsafe { libc::eventfd(1, 0) }, "eventfd")),
            Kind::Pty => {
                let (mut master, mut slave) = (0, 0);
                // SAFETY: valid out-pointers; no name, termios or window size.
                check(
                    unsafe {
                        libc::openpty(
                            &mut master,
                            &mut slave,
                            std::ptr::null_mut(),
                            std::ptr::null(),
                            std::ptr::null(),
                        )
                    },
                    "openpty",
                );
                write_all(slave, b"hi\n");
                // Give the line discipline a moment to pass it to the master.
                std::thread::sleep(std::time::Duration::from_millis(5));
                Fixture {
                    fd: master,
                    keep: vec![slave],
                    port: 0,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::TcpFresh => {
                let (listen, port) = listener();
                Fixture {
                    fd: tcp_socket(),
                    keep: vec![listen],
                    port,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::TcpListening => {
                let (fd, port) = listener();
                Fixture {
                    fd,
                    keep: Vec::new(),
                    port,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::TcpPending => {
                let (fd, port) = listener();
                let client = tcp_socket();
                check(connect_to(client, port), "connect");
                Fixture {
                    fd,
                    keep: vec![client],
                    port,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::TcpConnecting => {
                let mut full = Fixture::unanswering_listener();
                let port = full.port;
                let fd = tcp_socket();
                // SAFETY: fcntl on a socket we own.
                check(
                    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) },
                    "fcntl",
                );
                let rc = connect_to(fd, port);
                let err = std::io::Error::last_os_error().raw_os_error();
                assert!(
                    rc == -1 && err == Some(libc::EINPROGRESS),
                    "fixture: connect to a full listener: {rc} {err:?}"
                );
                // SAFETY: as above.
                check(unsafe { libc::fcntl(fd, libc::F_SETFL, 0) }, "fcntl");
                // The listener and its filler now belong to this fixture.
                let mut keep = std::mem::take(&mut full.keep);
                keep.push(full.fd);
                full.owned.set(false);
                Fixture {
                    fd,
                    keep,
                    port,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::TcpIdle => {
                let (client, server, listen, port) = tcp_pair();
                Fixture {
                    fd: client,
                    keep: vec![server, listen],
                    port,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::TcpConnected => {
                let (client, server, listen, port) = tcp_pair();
                write_all(server, b"hello");
                Fixture {
                    fd: client,
                    keep: vec![server, listen],
                    port,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::TcpPeerClosed => {
                let (client, server, listen, port) = tcp_pair();
                // SAFETY: an fd we own.
                unsafe { libc::close(server) };
                Fixture {
                    fd: client,
                    keep: vec![listen],
                    port,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::TcpReset => {
                let (client, server, listen, port) = tcp_pair();
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: a valid linger of the size given; closing sends a reset.
                unsafe {
                    libc::setsockopt(
                        server,
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as u32,
                    );
                    libc::close(server);
                }
                Fixture {
                    fd: client,
                    keep: vec![listen],
                    port,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::TcpShutdown => {
                let (client, server, listen, port) = tcp_pair();
                // SAFETY: a connected socket we own.
                check(
                    unsafe { libc::shutdown(client, libc::SHUT_RDWR) },
                    "shutdown",
                );
                Fixture {
                    fd: client,
                    keep: vec![server, listen],
                    port,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::UnixPair => {
                let mut sv = [0; 2];
                // SAFETY: room for two fds.
                check(
                    unsafe {
                        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr())
                    },
                    "socketpair",
                );
                short_timeouts(sv[0]);
                write_all(sv[1], b"hello");
                Fixture {
                    fd: sv[0],
                    keep: vec![sv[1]],
                    port: 0,
                    owned: std::cell::Cell::new(true),
                }
            }
            Kind::Udp => {
                // SAFETY: plain socket creation.
                let fd = check(
                    unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) },
                    "udp socket",
                );
                short_timeouts(fd);
                let addr = loopback(0);
                let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
                // SAFETY: valid addresses of the size given.
                unsafe {
                    check(
                        libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len),
                        "bind",
                    );
                    let mut bound: libc::sockaddr_in = std::mem::zeroed();
                    let mut blen = len;
                    libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in).cast(), &mut blen);
                    check(
                        libc::sendto(
                            fd,
                            b"hello".as_ptr().cast(),
                            5,
                            0,
                            (&bound as *const libc::sockaddr_in).cast(),
                            len,
                        ) as c_int,
                        "sendto self",
                    );
                }
                simple(fd)
            }
        }
    }

    /// A listening TCP socket that answers no new connection: its accept queue (backlog 0)
    /// holds one connection already, so the kernel drops the SYNs of the next ones and their
    /// connects stay under way.
    pub fn unanswering_listener() -> Fixture {
        let (listen, port) = listener();
        // SAFETY: a listening socket; a backlog of 0 holds one connection.
        check(unsafe { libc::listen(listen, 0) }, "listen 0");
        let filler = tcp_socket();
        check(connect_to(filler, port), "connect filler");
        Fixture {
            fd: listen,
            keep: vec![filler],
            port,
            owned: std::cell::Cell::new(true),
        }
    }

    /// Whether the fixture owns (and will close) its `fd`.
    pub fn owns(&self) -> bool {
        self.owned.get()
    }

    /// Gives up the fd (the case closed it itself).
    pub fn disown(&self) {
        self.owned.set(false);
    }

    /// A fixture for a number it does not own (it never closes it).
    fn not_owned(fd: c_int) -> Fixture {
        Fixture {
            fd,
            keep: Vec::new(),
            port: 0,
            owned: std::cell::Cell::new(false),
        }
    }
}
