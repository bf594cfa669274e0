//! The control socket's runtime side (the protocol and the rules are in `corun::control`):
//! opened when the runtime starts, answered by the monitor thread between its other duties.
//!
//! Every call here is the real libc one (`real::…`) or one the hooks do not interpose, so the
//! fd table never hears of these fds.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

use corun::control;

use crate::hooks::errno;
use crate::log;
use crate::real;

/// The listening socket, or -1.
static LISTENER: AtomicI32 = AtomicI32::new(-1);
/// The process that opened it (a forked child must not remove its parent's socket).
static OWNER: AtomicI32 = AtomicI32::new(0);

/// How long a client may take to send its request, and to take the answer.
const CLIENT_TIMEOUT_MS: libc::c_int = 2_000;

fn c_path(path: &std::path::Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("control paths have no NUL")
}

/// Opens this process's control socket; warns (once) and carries on without it if it cannot.
pub fn open() {
    if let Err(why) = try_open() {
        log::warn(format_args!(
            "no control socket (`corun dump` will not reach this process): {why}"
        ));
    }
}

fn try_open() -> Result<(), String> {
    // SAFETY: no preconditions.
    let (uid, pid) = unsafe { (libc::geteuid(), libc::getpid()) };
    let dir = control::socket_dir(uid);
    let c_dir = c_path(&dir);
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mkdir(c_dir.as_ptr(), 0o700) } != 0 && errno() != libc::EEXIST {
        return Err(format!("cannot create {}: {}", dir.display(), last_error()));
    }
    // SAFETY: an all-zero stat is a valid out-value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    if unsafe { libc::lstat(c_dir.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "cannot inspect {}: {}",
            dir.display(),
            last_error()
        ));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR || st.st_uid != uid || st.st_mode & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of this user (it must be a directory owned by uid \
             {uid} with mode 0700)",
            dir.display()
        ));
    }
    sweep_stale(&dir);
    let path = control::socket_path(uid, pid as u32);
    let c_sock = c_path(&path);
    // A socket left by an earlier process with this pid (it died without cleaning up).
    // SAFETY: a NUL-terminated path.
    unsafe { libc::unlink(c_sock.as_ptr()) };
    // SAFETY: plain socket creation.
    let fd = unsafe {
        real::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(format!("socket: {}", last_error()));
    }
    // SAFETY: an all-zero sockaddr_un is valid; the path fits (checked below).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = c_sock.as_bytes_with_nul();
    if bytes.len() > addr.sun_path.len() {
        // SAFETY: our own fd.
        unsafe { real::close(fd) };
        return Err(format!("{} is too long for a socket path", path.display()));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: a valid address of the size given, on our own socket.
    let bound = unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len) } == 0
        // SAFETY: a NUL-terminated path.
        && unsafe { libc::chmod(c_sock.as_ptr(), 0o600) } == 0
        // SAFETY: a bound socket.
        && unsafe { libc::listen(fd, 8) } == 0;
    if !bound {
        let why = last_error();
        // SAFETY: our own fd and path.
        unsafe {
            real::close(fd);
            libc::unlink(c_sock.as_ptr());
        }
        return Err(format!("cannot listen on {}: {why}", path.display()));
    }
    OWNER.store(pid, Ordering::SeqCst);
    LISTENER.store(fd, Ordering::SeqCst);
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: registering a plain extern "C" function.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(remove_at_exit);
    });
    Ok(())
}

/// Removes the sockets of processes that no longer exist (killed ones cannot remove their
/// own). A live process's socket is never touched: its pid is in `/proc`.
fn sweep_stale(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".sock"))
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Removes the socket file when the process that made it exits normally.
extern "C" fn remove_at_exit() {
    // SAFETY: no preconditions.
    let (uid, pid) = unsafe { (libc::geteuid(), libc::getpid()) };
    if OWNER.load(Ordering::SeqCst) == pid && LISTENER.load(Ordering::SeqCst) >= 0 {
        let path = c_path(&control::socket_path(uid, pid as u32));
        // SAFETY: a NUL-terminated path.
        unsafe { libc::unlink(path.as_ptr()) };
    }
}

/// In the child of a `fork`: the socket is the parent's; close this copy (the child opens its
/// own when its runtime starts).
///
/// # Safety
/// Only in a forked child, before anything else runs (see `runtime::fork`).
pub unsafe fn forget_in_child() {
    let fd = LISTENER.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: the child's copy of the parent's listening socket.
        unsafe { real::close(fd) };
    }
}

/// Answers every client waiting now: `answer(json)` renders the dump.
pub fn serve_pending(mut answer: impl FnMut(bool) -> String) {
    let listener = LISTENER.load(Ordering::SeqCst);
    if listener < 0 {
        return;
    }
    loop {
        // SAFETY: accept without an address, on our listening socket.
        let conn = unsafe {
            real::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        if conn < 0 {
            return; // EAGAIN: nobody else waits (or an error we cannot help)
        }
        serve(conn, &mut answer);
        // SAFETY: the connection we accepted.
        unsafe { real::close(conn) };
    }
}

/// The user id of the process at the other end of `conn`.
fn peer_uid(conn: libc::c_int) -> Option<u32> {
    // SAFETY: an all-zero ucred is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: valid out-pointers of the size given.
    let rc = unsafe {
        real::getsockopt(
            conn,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

fn serve(conn: libc::c_int, answer: &mut impl FnMut(bool) -> String) {
    // SAFETY: no preconditions.
    let owner = unsafe { libc::geteuid() };
    match peer_uid(conn) {
        Some(peer) if control::allowed(peer, owner) => {}
        // Anyone else learns nothing: the connection closes without a byte.
        _ => return,
    }
    let mut request = [0u8; 32];
    let Some(n) = read_request(conn, &mut request) else {
        return;
    };
    let text = match &request[..n] {
        r if r == control::REQUEST_TEXT => answer(false),
        r if r == control::REQUEST_JSON => answer(true),
        _ => "corun: unknown control request\n".to_owned(),
    };
    write_answer(conn, text.as_bytes());
}

/// Waits for `conn` to be ready for `events`, within `ms`.
fn ready(conn: libc::c_int, events: libc::c_short, ms: libc::c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd: conn,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { real::poll(&mut pfd, 1, ms) };
    n == 1 && pfd.revents & events != 0
}

/// Reads the request line (up to a newline or `buf.len()` bytes) within the client timeout.
fn read_request(conn: libc::c_int, buf: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    while n < buf.len() && !buf[..n].ends_with(b"\n") {
        if !ready(conn, libc::POLLIN, CLIENT_TIMEOUT_MS) {
            return None;
        }
        // SAFETY: the rest of our buffer.
        let got = unsafe { real::read(conn, buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        if got <= 0 {
            return (n > 0).then_some(n);
        }
        n += got as usize;
    }
    Some(n)
}

fn write_answer(conn: libc::c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        if !ready(conn, libc::POLLOUT, CLIENT_TIMEOUT_MS) {
            return; // the client stopped reading
        }
        // SAFETY: our buffer; MSG_NOSIGNAL: a client gone is not a SIGPIPE.
        let n = unsafe { real::send(conn, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}
