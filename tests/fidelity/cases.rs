//! The cases: every interposed call against every kind of fd, with edge inputs, plus the calls
//! that take no fd (sleeps, futexes, poll and select on bad arguments) and the blocking calls
//! interrupted by a signal (`signals.rs`).
//!
//! A case builds its own fixture, makes one or two calls and reports what they returned, the
//! errno of a failure, what came out (bytes read, flags, revents), and whether a call took
//! long (at least `SLOW_MS`: the sockets' 20 ms timeouts, or a sleep). The order of the list
//! is the same in every process, so a case is known by its index.

use std::ffi::c_void;
use std::time::{Duration, Instant};

use libc::{c_int, iovec};

use super::fixtures::{loopback, Fixture, Kind, KINDS};

/// A call taking this long or more counts as "slow" (it waited).
pub const SLOW_MS: u128 = 15;

/// What one case saw; equal outcomes mean libc and the hook agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub text: String,
}

/// What a case does, given its fixture (if it takes an fd), recording into the report.
pub type CaseFn = fn(Option<&Fixture>, &mut Report);

/// One case: a name and what it does, in whatever context it is run.
pub struct Case {
    pub name: String,
    pub kind: Option<Kind>,
    pub run: CaseFn,
}

/// What a case records as it goes.
#[derive(Default)]
pub struct Report {
    parts: Vec<String>,
}

impl Report {
    /// Records a call's result: the return value (or `fd` for a new descriptor), the errno of
    /// a failure, and whether it waited.
    pub fn call(&mut self, label: &str, returns_fd: bool, f: impl FnOnce() -> isize) -> isize {
        set_errno(0);
        let started = Instant::now();
        let ret = f();
        let err = errno();
        let slow = started.elapsed().as_millis() >= SLOW_MS;
        let shown = if returns_fd && ret >= 0 {
            "fd".to_string()
        } else if ret < 0 {
            format!("-1 {}", errno_name(err))
        } else {
            ret.to_string()
        };
        self.parts.push(format!(
            "{label}={shown}{}",
            if slow { " slow" } else { "" }
        ));
        ret
    }

    /// Records a value that came out of a call.
    pub fn note(&mut self, label: &str, value: impl std::fmt::Display) {
        self.parts.push(format!("{label}:{value}"));
    }

    pub fn finish(self) -> Outcome {
        Outcome {
            text: self.parts.join(" "),
        }
    }
}

fn errno() -> c_int {
    // SAFETY: the thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value };
}

fn errno_name(err: c_int) -> String {
    let names = [
        (libc::EAGAIN, "EAGAIN"),
        (libc::EBADF, "EBADF"),
        (libc::EFAULT, "EFAULT"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENOTSOCK, "ENOTSOCK"),
        (libc::ENOTCONN, "ENOTCONN"),
        (libc::EISCONN, "EISCONN"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
        (libc::ECONNRESET, "ECONNRESET"),
        (libc::ECONNABORTED, "ECONNABORTED"),
        (libc::EPIPE, "EPIPE"),
        (libc::EISDIR, "EISDIR"),
        (libc::ESPIPE, "ESPIPE"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EINPROGRESS, "EINPROGRESS"),
        (libc::EALREADY, "EALREADY"),
        (libc::EDESTADDRREQ, "EDESTADDRREQ"),
        (libc::ENOTTY, "ENOTTY"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::EMSGSIZE, "EMSGSIZE"),
        (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
        (libc::EDOM, "EDOM"),
        (libc::ENOPROTOOPT, "ENOPROTOOPT"),
        (libc::EIO, "EIO"),
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::EINTR, "EINTR"),
    ];
    names
        .iter()
        .find(|(n, _)| *n == err)
        .map_or_else(|| format!("errno{err}"), |(_, name)| name.to_string())
}

/// An address no mapping covers (below the first page).
const BAD: usize = 0x10;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

fn fd_of(fixture: Option<&Fixture>) -> c_int {
    fixture.map_or(-1, |f| f.fd)
}

/// `F_GETFL` as the user sees it: the access mode, `O_NONBLOCK` and `O_APPEND`.
fn flags(report: &mut Report, label: &str, fd: c_int) {
    // SAFETY: F_GETFL takes no argument; a bad fd is an error.
    let flags = report.call(label, false, || unsafe { libc::fcntl(fd, libc::F_GETFL) }
        as isize);
    if flags >= 0 {
        let shown = flags as c_int & (libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_APPEND);
        report.note(label, format!("{shown:#x}"));
    }
}

fn read_into(report: &mut Report, label: &str, fd: c_int, len: usize) {
    let mut buf = [0u8; 64];
    // SAFETY: a buffer of at least `len` bytes.
    let n = report.call(label, false, || unsafe {
        libc::read(fd, buf.as_mut_ptr().cast(), len)
    });
    if n > 0 {
        report.note(label, text(&buf[..n as usize]));
    }
}

/// `connect(fd, addr)`, reported under `label`.
fn connect_loopback(r: &mut Report, label: &str, fd: c_int, addr: &libc::sockaddr_in) {
    // SAFETY: a valid address of the size given.
    r.call(label, false, || unsafe {
        libc::connect(
            fd,
            (addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    } as isize);
}

/// A listener of this case's own (for `connect`): its fd and port.
fn own_listener() -> Fixture {
    Fixture::new(Kind::TcpListening)
}

/// The fd-taking calls, each run against every kind.
const FD_CALLS: &[(&str, CaseFn)] =
    &[
        ("read", |f, r| read_into(r, "read", fd_of(f), 16)),
        ("read-twice", |f, r| {
            read_into(r, "read1", fd_of(f), 64);
            read_into(r, "read2", fd_of(f), 64);
        }),
        ("read-zero", |f, r| read_into(r, "read0", fd_of(f), 0)),
        ("read-short-4", |f, r| read_into(r, "read4", fd_of(f), 4)),
        ("read-bad-buffer", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a bad buffer: the kernel checks it.
            r.call("read", false, || unsafe {
                libc::read(fd, BAD as *mut c_void, 16)
            });
        }),
        ("readv", |f, r| {
            let fd = fd_of(f);
            let mut buf = [0u8; 16];
            let iov = [iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: 16,
            }];
            // SAFETY: one valid iovec.
            let n = r.call("readv", false, || unsafe {
                libc::readv(fd, iov.as_ptr(), 1)
            });
            if n > 0 {
                r.note("readv", text(&buf[..n as usize]));
            }
        }),
        ("readv-zero-count", |f, r| {
            let fd = fd_of(f);
            let mut buf = [0u8; 16];
            let iov = [iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: 16,
            }];
            // SAFETY: a valid iovec array (none of it used).
            r.call("readv", false, || unsafe {
                libc::readv(fd, iov.as_ptr(), 0)
            });
        }),
        ("readv-negative-count", |f, r| {
            let fd = fd_of(f);
            let mut buf = [0u8; 16];
            let iov = [iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: 16,
            }];
            // SAFETY: a bad count: the kernel checks it.
            r.call("readv", false, || unsafe {
                libc::readv(fd, iov.as_ptr(), -1)
            });
        }),
        ("readv-bad-array", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a bad array: the kernel checks it.
            r.call("readv", false, || unsafe {
                libc::readv(fd, BAD as *const iovec, 1)
            });
        }),
        ("write", |f, r| {
            let fd = fd_of(f);
            // SAFETY: a valid buffer.
            r.call("write", false, || unsafe {
                libc::write(fd, b"abc".as_ptr().cast(), 3)
            });
        }),
        ("write-zero", |f, r| {
            let fd = fd_of(f);
            // SAFETY: a valid buffer, nothing written.
            r.call("write", false, || unsafe {
                libc::write(fd, b"abc".as_ptr().cast(), 0)
            });
        }),
        ("write-bad-buffer", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a bad buffer: the kernel checks it.
            r.call("write", false, || unsafe {
                libc::write(fd, BAD as *const c_void, 3)
            });
        }),
        ("writev", |f, r| writev_abc(f, r, 1)),
        ("writev-zero-count", |f, r| writev_abc(f, r, 0)),
        ("writev-negative-count", |f, r| writev_abc(f, r, -1)),
        ("writev-bad-array", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a bad array: the kernel checks it.
            r.call("writev", false, || unsafe {
                libc::writev(fd, BAD as *const iovec, 1)
            });
        }),
        ("recv", |f, r| recv_with(f, r, 0)),
        ("recv-dontwait", |f, r| recv_with(f, r, libc::MSG_DONTWAIT)),
        ("recv-peek", |f, r| recv_with(f, r, libc::MSG_PEEK)),
        ("recv-errqueue", |f, r| recv_with(f, r, libc::MSG_ERRQUEUE)),
        ("recv-zero", |f, r| {
            let fd = fd_of(f);
            let mut buf = [0u8; 1];
            // SAFETY: a valid buffer, zero bytes of it.
            r.call("recv0", false, || unsafe {
                libc::recv(fd, buf.as_mut_ptr().cast(), 0, 0)
            });
        }),
        ("recv-bad-buffer", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a bad buffer: the kernel checks it.
            r.call("recv", false, || unsafe {
                libc::recv(fd, BAD as *mut c_void, 16, 0)
            });
        }),
        ("recvfrom", |f, r| {
            let fd = fd_of(f);
            let mut buf = [0u8; 16];
            let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            // SAFETY: valid buffers and lengths.
            let n = r.call("recvfrom", false, || unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    16,
                    0,
                    (&mut addr as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                )
            });
            if n > 0 {
                r.note("recvfrom", text(&buf[..n as usize]));
            }
        }),
        ("recvmsg", |f, r| recvmsg_with(f, r, 0)),
        ("recvmsg-errqueue", |f, r| {
            recvmsg_with(f, r, libc::MSG_ERRQUEUE)
        }),
        ("recvmsg-zero", |f, r| {
            let fd = fd_of(f);
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            // SAFETY: a valid header with no iovecs.
            r.call("recvmsg0", false, || unsafe {
                libc::recvmsg(fd, &mut msg, 0)
            });
        }),
        ("recvmsg-null", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a null header: the kernel checks it.
            r.call("recvmsg", false, || unsafe {
                libc::recvmsg(fd, std::ptr::null_mut(), 0)
            });
        }),
        ("recvmsg-bad-iov", |f, r| {
            let fd = fd_of(f);
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = BAD as *mut iovec;
            msg.msg_iovlen = 1;
            // SAFETY: deliberately a bad iovec array: the kernel checks it.
            r.call("recvmsg", false, || unsafe {
                libc::recvmsg(fd, &mut msg, 0)
            });
        }),
        ("send", |f, r| {
            let fd = fd_of(f);
            // SAFETY: a valid buffer.
            r.call("send", false, || unsafe {
                libc::send(fd, b"abc".as_ptr().cast(), 3, libc::MSG_NOSIGNAL)
            });
        }),
        ("send-zero", |f, r| {
            let fd = fd_of(f);
            // SAFETY: a valid buffer, zero bytes of it.
            r.call("send0", false, || unsafe {
                libc::send(fd, b"abc".as_ptr().cast(), 0, libc::MSG_NOSIGNAL)
            });
        }),
        ("send-bad-buffer", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a bad buffer: the kernel checks it.
            r.call("send", false, || unsafe {
                libc::send(fd, BAD as *const c_void, 3, libc::MSG_NOSIGNAL)
            });
        }),
        ("sendto", |f, r| {
            let fd = fd_of(f);
            // SAFETY: a valid buffer, no address.
            r.call("sendto", false, || unsafe {
                libc::sendto(
                    fd,
                    b"abc".as_ptr().cast(),
                    3,
                    libc::MSG_NOSIGNAL,
                    std::ptr::null(),
                    0,
                )
            });
        }),
        ("sendmsg", |f, r| {
            let fd = fd_of(f);
            let iov = [iovec {
                iov_base: b"abc".as_ptr() as *mut c_void,
                iov_len: 3,
            }];
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_ptr() as *mut iovec;
            msg.msg_iovlen = 1;
            // SAFETY: a valid header and iovec.
            r.call("sendmsg", false, || unsafe {
                libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
            });
        }),
        ("sendmsg-null", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a null header: the kernel checks it.
            r.call("sendmsg", false, || unsafe {
                libc::sendmsg(fd, std::ptr::null(), libc::MSG_NOSIGNAL)
            });
        }),
        ("sendmsg-bad-iov", |f, r| {
            let fd = fd_of(f);
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = BAD as *mut iovec;
            msg.msg_iovlen = 1;
            // SAFETY: deliberately a bad iovec array: the kernel checks it.
            r.call("sendmsg", false, || unsafe {
                libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
            });
        }),
        ("accept", |f, r| {
            let fd = fd_of(f);
            // SAFETY: no address wanted.
            let new = r.call("accept", true, || unsafe {
                libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut())
            } as isize);
            close_new(new);
        }),
        ("accept4-bad-flags", |f, r| {
            let fd = fd_of(f);
            // SAFETY: no address wanted; the flags are bad on purpose.
            let new = r.call("accept4", true, || unsafe {
                libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), 0x7000_0000)
            } as isize);
            close_new(new);
        }),
        ("connect", |f, r| {
            let fd = fd_of(f);
            let target = own_listener();
            let addr = loopback(target.port);
            connect_loopback(r, "connect", fd, &addr);
        }),
        ("connect-twice", |f, r| {
            let fd = fd_of(f);
            let target = own_listener();
            let addr = loopback(target.port);
            for label in ["connect1", "connect2"] {
                connect_loopback(r, label, fd, &addr);
            }
        }),
        ("connect-unanswered", |f, r| {
            let fd = fd_of(f);
            let target = Fixture::unanswering_listener();
            let addr = loopback(target.port);
            connect_loopback(r, "connect", fd, &addr);
        }),
        ("connect-refused-twice", |f, r| {
            let fd = fd_of(f);
            let port = {
                let gone = own_listener();
                gone.port
            };
            let addr = loopback(port);
            for label in ["connect1", "connect2"] {
                connect_loopback(r, label, fd, &addr);
            }
        }),
        ("connect-bad-address", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a bad address: the kernel checks it.
            r.call("connect", false, || unsafe {
                libc::connect(fd, BAD as *const libc::sockaddr, 16)
            } as isize);
        }),
        ("poll-now", |f, r| poll_one(f, r, 0)),
        ("poll-20ms", |f, r| poll_one(f, r, 20)),
        ("select-20ms", |f, r| {
            let fd = fd_of(f);
            if !(0..1024).contains(&fd) {
                r.note("select", "skipped: no fd_set bit");
                return;
            }
            // SAFETY: zeroed fd_sets are empty sets; fd < FD_SETSIZE.
            let (mut rd, mut wr): (libc::fd_set, libc::fd_set) =
                unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
            unsafe {
                libc::FD_SET(fd, &mut rd);
                libc::FD_SET(fd, &mut wr);
            }
            let mut tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            };
            // SAFETY: valid sets and timeout.
            let n = r.call("select", false, || unsafe {
                libc::select(fd + 1, &mut rd, &mut wr, std::ptr::null_mut(), &mut tv)
            } as isize);
            if n >= 0 {
                // SAFETY: sets the kernel filled in.
                let (in_rd, in_wr) = unsafe { (libc::FD_ISSET(fd, &rd), libc::FD_ISSET(fd, &wr)) };
                r.note("select", format!("r={in_rd} w={in_wr}"));
            }
        }),
        ("getfl", |f, r| flags(r, "getfl", fd_of(f))),
        ("setfl-nonblock", |f, r| {
            let fd = fd_of(f);
            // SAFETY: F_SETFL with flags; a bad fd is an error.
            r.call(
                "setfl",
                false,
                || unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) } as isize,
            );
            flags(r, "getfl", fd);
            read_into(r, "read", fd, 64);
            read_into(r, "read", fd, 64);
        }),
        ("fionbio", |f, r| {
            let fd = fd_of(f);
            let on: c_int = 1;
            // SAFETY: FIONBIO takes a pointer to an int.
            r.call(
                "fionbio",
                false,
                || unsafe { libc::ioctl(fd, libc::FIONBIO, &on) } as isize,
            );
            flags(r, "getfl", fd);
        }),
        ("fionbio-bad-pointer", |f, r| {
            let fd = fd_of(f);
            // SAFETY: deliberately a bad pointer: the kernel checks it.
            r.call("fionbio", false, || unsafe {
                libc::ioctl(fd, libc::FIONBIO, BAD as *const c_int)
            } as isize);
            flags(r, "getfl", fd);
        }),
        ("dup-then-nonblock-the-copy", |f, r| {
            let fd = fd_of(f);
            // SAFETY: plain dup; a bad fd is an error.
            let copy = r.call("dup", true, || unsafe { libc::dup(fd) } as isize) as c_int;
            if copy >= 0 {
                // O_NONBLOCK belongs to the open file description both numbers share.
                // SAFETY: an fd we own.
                unsafe { libc::fcntl(copy, libc::F_SETFL, libc::O_NONBLOCK) };
                flags(r, "original", fd);
                read_into(r, "read", fd, 64);
                read_into(r, "read", fd, 64);
                // SAFETY: an fd we own.
                unsafe { libc::close(copy) };
            }
        }),
        ("rcvtimeo-new-20ms", |f, r| {
            let fd = fd_of(f);
            // SO_RCVTIMEO_NEW takes a __kernel_sock_timeval: two 64-bit fields.
            let tv: [i64; 2] = [0, 20_000];
            // SAFETY: a valid value of the size given.
            r.call("setsockopt", false, || unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    SO_RCVTIMEO_NEW,
                    tv.as_ptr().cast(),
                    16,
                )
            } as isize);
            read_into(r, "read", fd, 64);
            read_into(r, "read", fd, 64);
        }),
        ("rcvtimeo-negative", |f, r| {
            let fd = fd_of(f);
            // A negative timeout means "no timeout" to the kernel; only getsockopt can show it
            // without waiting forever, so the case reads the option back.
            let tv = libc::timeval {
                tv_sec: -1,
                tv_usec: 500_000,
            };
            // SAFETY: a valid timeval of the size given.
            r.call("setsockopt", false, || unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            } as isize);
            let mut back = libc::timeval {
                tv_sec: 9,
                tv_usec: 9,
            };
            let mut len = std::mem::size_of::<libc::timeval>() as u32;
            // SAFETY: valid out-pointers.
            let rc = r.call("getsockopt", false, || unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&mut back as *mut libc::timeval).cast(),
                    &mut len,
                )
            } as isize);
            if rc == 0 {
                r.note("timeout", format!("{}.{:06}", back.tv_sec, back.tv_usec));
            }
        }),
        ("rcvtimeo-negative-then-read", |f, r| {
            let fd = fd_of(f);
            set_timeout(r, fd, libc::SO_RCVTIMEO, -1, 500_000);
            read_into(r, "read", fd, 64);
            read_into(r, "read", fd, 64);
        }),
        ("dup-then-timeout-the-copy", |f, r| {
            let fd = fd_of(f);
            // SAFETY: plain dup; a bad fd is an error.
            let copy = r.call("dup", true, || unsafe { libc::dup(fd) } as isize) as c_int;
            if copy >= 0 {
                // Socket options belong to the socket, whichever number sets them: a negative
                // timeout makes a blocking read give up at once.
                set_timeout(r, copy, libc::SO_RCVTIMEO, -1, 0);
                read_into(r, "read", fd, 64);
                read_into(r, "read", fd, 64);
                // SAFETY: an fd we own.
                unsafe { libc::close(copy) };
            }
        }),
        ("fclose-of-fdopen-then-reuse", |f, r| {
            reuse_after(f, r, "fclose", |fd| {
                // SAFETY: a stream over the fixture's own fd, closed at once (closing the fd).
                unsafe {
                    let stream = libc::fdopen(fd, c"r+".as_ptr());
                    if stream.is_null() {
                        libc::close(fd) as isize
                    } else {
                        libc::fclose(stream) as isize
                    }
                }
            })
        }),
        ("close_range-then-reuse", |f, r| {
            reuse_after(f, r, "close_range", |fd| {
                // SAFETY: closes exactly the fixture's own fd.
                unsafe { libc::close_range(fd as u32, fd as u32, 0) as isize }
            })
        }),
        ("syscall-close-then-reuse", |f, r| {
            reuse_after(f, r, "syscall", |fd| {
                // SAFETY: closes the fixture's own fd.
                unsafe { libc::syscall(libc::SYS_close, fd) as isize }
            })
        }),
        ("close-twice", |f, r| {
            // Only a fixture's own fd: a number it does not own may be someone else's by now.
            let Some(fixture) = f.filter(|f| f.owns()) else {
                r.note("close", "skipped: not the fixture's own fd");
                return;
            };
            let fd = fixture.fd;
            fixture.disown();
            // SAFETY: closing the fixture's own fd, which it no longer closes itself.
            r.call("close1", false, || unsafe { libc::close(fd) } as isize);
            // SAFETY: the number is closed: EBADF (nothing here opens an fd in between).
            r.call("close2", false, || unsafe { libc::close(fd) } as isize);
        }),
    ];

/// Sets a socket timeout option.
fn set_timeout(r: &mut Report, fd: c_int, option: c_int, sec: i64, usec: i64) {
    let tv = libc::timeval {
        tv_sec: sec,
        tv_usec: usec,
    };
    // SAFETY: a valid timeval of the size given.
    r.call("setsockopt", false, || unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    } as isize);
}

/// Closes the fixture's fd with `close` (a way the hooks may not see), opens a regular file in
/// its place (the lowest free number: the same one) and reads it: a stale entry for the old fd
/// must not change what the read does.
fn reuse_after(f: Option<&Fixture>, r: &mut Report, label: &str, close: fn(c_int) -> isize) {
    let Some(fixture) = f.filter(|f| f.owns()) else {
        r.note("reuse", "skipped: not the fixture's own fd");
        return;
    };
    let fd = fixture.fd;
    fixture.disown();
    r.call(label, false, || close(fd));
    let path = std::env::temp_dir().join(format!("corun-fidelity-reuse-{}", std::process::id()));
    std::fs::write(&path, "file").unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    let file = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    let _ = std::fs::remove_file(&path);
    r.note("same-number", file == fd);
    read_into(r, "read", file, 64);
    // SAFETY: the file we just opened.
    unsafe { libc::close(file) };
}

/// `SO_RCVTIMEO_NEW` on x86_64.
const SO_RCVTIMEO_NEW: c_int = 66;

fn close_new(fd: isize) {
    if fd >= 0 {
        // SAFETY: a new fd the case just got.
        unsafe { libc::close(fd as c_int) };
    }
}

/// `writev` of one iovec ("abc") with iovec count `count` (0 and -1 on purpose: the kernel
/// checks the count).
fn writev_abc(f: Option<&Fixture>, r: &mut Report, count: c_int) {
    let fd = fd_of(f);
    let iov = [iovec {
        iov_base: b"abc".as_ptr() as *mut c_void,
        iov_len: 3,
    }];
    // SAFETY: a valid iovec array of one; a count beyond it is never passed.
    r.call("writev", false, || unsafe {
        libc::writev(fd, iov.as_ptr(), count)
    });
}

fn recv_with(f: Option<&Fixture>, r: &mut Report, flags: c_int) {
    let fd = fd_of(f);
    let mut buf = [0u8; 16];
    // SAFETY: a valid buffer.
    let n = r.call("recv", false, || unsafe {
        libc::recv(fd, buf.as_mut_ptr().cast(), 16, flags)
    });
    if n > 0 {
        r.note("recv", text(&buf[..n as usize]));
    }
}

fn recvmsg_with(f: Option<&Fixture>, r: &mut Report, flags: c_int) {
    let fd = fd_of(f);
    let mut buf = [0u8; 16];
    let mut iov = [iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: 16,
    }];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = 1;
    // SAFETY: a valid header and iovec.
    let n = r.call("recvmsg", false, || unsafe {
        libc::recvmsg(fd, &mut msg, flags)
    });
    if n > 0 {
        r.note("recvmsg", text(&buf[..n as usize]));
    }
}

fn poll_one(f: Option<&Fixture>, r: &mut Report, timeout: c_int) {
    let fd = fd_of(f);
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = r.call(
        "poll",
        false,
        || unsafe { libc::poll(&mut pfd, 1, timeout) } as isize,
    );
    if n >= 0 {
        r.note("revents", format!("{:#x}", pfd.revents));
    }
}

/// The calls that take no fixture.
const OTHER_CALLS: &[(&str, CaseFn)] = &[
    ("poll-null-one", |_, r| {
        // SAFETY: deliberately a null array: the kernel checks it.
        r.call(
            "poll",
            false,
            || unsafe { libc::poll(std::ptr::null_mut(), 1, 10) } as isize,
        );
    }),
    ("poll-bad-array", |_, r| {
        // SAFETY: deliberately a bad array: the kernel checks it.
        r.call(
            "poll",
            false,
            || unsafe { libc::poll(BAD as *mut libc::pollfd, 1, 10) } as isize,
        );
    }),
    ("poll-null-zero", |_, r| {
        // SAFETY: no fds.
        r.call(
            "poll",
            false,
            || unsafe { libc::poll(std::ptr::null_mut(), 0, 20) } as isize,
        );
    }),
    ("poll-too-many", |_, r| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out-pointer.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        // SAFETY: the count is checked before the (bad) array is read.
        r.call("poll", false, || unsafe {
            libc::poll(BAD as *mut libc::pollfd, limit.rlim_cur + 1, 10)
        } as isize);
    }),
    ("poll-negative-fd", |_, r| {
        let mut pfd = libc::pollfd {
            fd: -5,
            events: libc::POLLIN,
            revents: 7,
        };
        // SAFETY: one valid pollfd.
        let n = r.call("poll", false, || unsafe { libc::poll(&mut pfd, 1, 20) }
            as isize);
        if n >= 0 {
            r.note("revents", format!("{:#x}", pfd.revents));
        }
    }),
    ("ppoll-bad-timeout", |_, r| {
        // SAFETY: deliberately a bad timespec: the kernel checks it.
        r.call("ppoll", false, || unsafe {
            libc::ppoll(
                std::ptr::null_mut(),
                0,
                BAD as *const libc::timespec,
                std::ptr::null(),
            )
        } as isize);
    }),
    ("ppoll-invalid-timeout", |_, r| {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000_000,
        };
        // SAFETY: a readable but invalid timespec.
        r.call("ppoll", false, || unsafe {
            libc::ppoll(std::ptr::null_mut(), 0, &ts, std::ptr::null())
        } as isize);
    }),
    ("select-negative-nfds", |_, r| {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 10_000,
        };
        // SAFETY: no sets; a bad count.
        r.call("select", false, || unsafe {
            libc::select(
                -1,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut tv,
            )
        } as isize);
    }),
    ("select-bad-set", |_, r| {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 10_000,
        };
        // SAFETY: deliberately a bad set: the kernel checks it.
        r.call("select", false, || unsafe {
            libc::select(
                4,
                BAD as *mut libc::fd_set,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut tv,
            )
        } as isize);
    }),
    ("select-bad-timeout", |_, r| {
        // SAFETY: deliberately a bad timeval: the kernel checks it.
        r.call("select", false, || unsafe {
            libc::select(
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                BAD as *mut libc::timeval,
            )
        } as isize);
    }),
    ("select-invalid-timeout", |_, r| {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 2_000_000,
        };
        // SAFETY: a readable but invalid timeval.
        r.call("select", false, || unsafe {
            libc::select(
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut tv,
            )
        } as isize);
    }),
    ("select-nothing-20ms", |_, r| {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        };
        // SAFETY: no sets, a valid timeout.
        r.call("select", false, || unsafe {
            libc::select(
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut tv,
            )
        } as isize);
        r.note(
            "left",
            if tv.tv_sec == 0 && tv.tv_usec == 0 {
                "0"
            } else {
                "some"
            },
        );
    }),
    ("nanosleep-null", |_, r| {
        // SAFETY: deliberately null: the kernel checks it.
        r.call("nanosleep", false, || unsafe {
            libc::nanosleep(std::ptr::null(), std::ptr::null_mut())
        } as isize);
    }),
    ("nanosleep-bad-pointer", |_, r| {
        // SAFETY: deliberately a bad pointer: the kernel checks it.
        r.call("nanosleep", false, || unsafe {
            libc::nanosleep(BAD as *const libc::timespec, std::ptr::null_mut())
        } as isize);
    }),
    ("nanosleep-invalid", |_, r| {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000_000,
        };
        // SAFETY: a valid pointer to an invalid timespec.
        r.call(
            "nanosleep",
            false,
            || unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) } as isize,
        );
    }),
    ("nanosleep-negative", |_, r| {
        let ts = libc::timespec {
            tv_sec: -1,
            tv_nsec: 0,
        };
        // SAFETY: a valid pointer to an invalid timespec.
        r.call(
            "nanosleep",
            false,
            || unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) } as isize,
        );
    }),
    ("nanosleep-20ms", |_, r| {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        // SAFETY: a valid timespec.
        r.call(
            "nanosleep",
            false,
            || unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) } as isize,
        );
    }),
    ("clock_nanosleep-null", |_, r| {
        // SAFETY: deliberately null: the kernel checks it (the error is the return value).
        r.call("clock_nanosleep", false, || unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                0,
                std::ptr::null(),
                std::ptr::null_mut(),
            )
        } as isize);
    }),
    ("clock_nanosleep-bad-clock", |_, r| {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1000,
        };
        // SAFETY: a valid timespec, an unknown clock.
        r.call("clock_nanosleep", false, || unsafe {
            libc::clock_nanosleep(99, 0, &ts, std::ptr::null_mut())
        } as isize);
    }),
    ("clock_nanosleep-thread-cpu-clock", |_, r| {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1000,
        };
        // SAFETY: a valid timespec.
        r.call("clock_nanosleep", false, || unsafe {
            libc::clock_nanosleep(libc::CLOCK_THREAD_CPUTIME_ID, 0, &ts, std::ptr::null_mut())
        } as isize);
    }),
    ("clock_nanosleep-invalid", |_, r| {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: -1,
        };
        // SAFETY: a valid pointer to an invalid timespec.
        r.call("clock_nanosleep", false, || unsafe {
            libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &ts, std::ptr::null_mut())
        } as isize);
    }),
    ("clock_nanosleep-abstime-past", |_, r| {
        let ts = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec in the past.
        r.call("clock_nanosleep", false, || unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        } as isize);
    }),
    ("usleep-20ms", |_, r| {
        // SAFETY: no pointers.
        r.call("usleep", false, || unsafe { libc::usleep(20_000) } as isize);
    }),
    ("futex-wait-null", |_, r| {
        futex_wait(r, 0, libc::FUTEX_WAIT, 0, 0)
    }),
    ("futex-wait-unaligned", |_, r| {
        let word = [0u32; 2];
        futex_wait(r, word.as_ptr() as usize + 1, libc::FUTEX_WAIT, 0, 0)
    }),
    ("futex-wait-unmapped", |_, r| {
        futex_wait(r, 0x1000, libc::FUTEX_WAIT, 0, 0)
    }),
    ("futex-wait-mismatch", |_, r| {
        let word = 5u32;
        futex_wait(r, &word as *const u32 as usize, libc::FUTEX_WAIT, 4, 0)
    }),
    ("futex-wait-1ms", |_, r| {
        let word = 5u32;
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        futex_wait(
            r,
            &word as *const u32 as usize,
            libc::FUTEX_WAIT,
            5,
            &ts as *const _ as usize,
        )
    }),
    ("futex-wait-bad-timeout", |_, r| {
        let word = 5u32;
        futex_wait(r, &word as *const u32 as usize, libc::FUTEX_WAIT, 5, BAD)
    }),
    ("futex-wait-bad-timeout-null-word", |_, r| {
        futex_wait(r, 0, libc::FUTEX_WAIT, 5, BAD)
    }),
    ("futex-wait-invalid-timeout", |_, r| {
        let word = 5u32;
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: -1,
        };
        futex_wait(
            r,
            &word as *const u32 as usize,
            libc::FUTEX_WAIT,
            5,
            &ts as *const _ as usize,
        )
    }),
    ("futex-wait-realtime-clock", |_, r| {
        let word = 5u32;
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        futex_wait(
            r,
            &word as *const u32 as usize,
            libc::FUTEX_WAIT | libc::FUTEX_CLOCK_REALTIME,
            5,
            &ts as *const _ as usize,
        )
    }),
    ("futex-wait-bitset-zero", |_, r| {
        let word = 5u32;
        set_errno(0);
        // SAFETY: a valid word; bitset 0 is invalid.
        r.call("futex", false, || unsafe {
            libc::syscall(
                libc::SYS_futex,
                &word as *const u32,
                libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
                5,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            )
        } as isize);
    }),
    ("futex-wake-zero", |_, r| futex_wake(r, 1, 0)),
    ("futex-wake-unmapped", |_, r| futex_wake(r, 0x1000, 1)),
    ("futex-wake-null", |_, r| futex_wake(r, 0, 1)),
];

fn futex_wait(r: &mut Report, addr: usize, op: c_int, expected: u32, timeout: usize) {
    // SAFETY: the kernel checks every argument (some are bad on purpose).
    r.call("futex", false, || unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr,
            op | libc::FUTEX_PRIVATE_FLAG,
            expected,
            timeout,
            0usize,
            0u32,
        )
    } as isize);
}

fn futex_wake(r: &mut Report, which: usize, count: c_int) {
    let word = 0u32;
    let addr = if which == 1 {
        &word as *const u32 as usize
    } else {
        which
    };
    // SAFETY: the kernel checks the address (some are bad on purpose).
    r.call("futex", false, || unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            count,
        )
    } as isize);
}

/// Every case, in a fixed order.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    for &(call, run) in FD_CALLS {
        for kind in KINDS {
            cases.push(Case {
                name: format!("{call} on {kind:?}"),
                kind: Some(kind),
                run,
            });
        }
    }
    for &(call, run) in OTHER_CALLS {
        cases.push(Case {
            name: call.to_string(),
            kind: None,
            run,
        });
    }
    for (name, run) in super::signals::all() {
        cases.push(Case {
            name,
            kind: None,
            run,
        });
    }
    cases
}

/// How long a case may take before it counts as hung.
pub const HANG: Duration = Duration::from_secs(3);
