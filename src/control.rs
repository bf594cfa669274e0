//! The control socket: how `corun dump PID` reaches a running program.
//!
//! A process whose runtime has started listens on a Unix stream socket at
//! [`socket_path`]`(euid, pid)`, inside a directory only its user can enter
//! (`/tmp/corun-UID`, mode 0700, created by the first corun process of that user and checked
//! by every later one: a directory, not a link, owned by the user, no access for others). The
//! runtime also checks every connection's `SO_PEERCRED`: only the same user, or root, gets an
//! answer; anyone else is disconnected without a byte. `CORUN_CONTROL=0` turns it off.
//!
//! The protocol is one request line from the client — [`REQUEST_TEXT`] or [`REQUEST_JSON`] —
//! answered by the dump, after which the runtime closes the connection.
//!
//! This module is shared by the runtime and the launcher; it is not part of the public API.

use std::path::PathBuf;

/// Asks for the text dump.
pub const REQUEST_TEXT: &[u8] = b"dump text\n";
/// Asks for the JSON dump.
pub const REQUEST_JSON: &[u8] = b"dump json\n";

/// The directory holding the control sockets of user `uid`'s processes.
pub fn socket_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/corun-{uid}"))
}

/// The control socket of process `pid`, run by user `uid`.
pub fn socket_path(uid: u32, pid: u32) -> PathBuf {
    socket_dir(uid).join(format!("{pid}.sock"))
}

/// Whether a peer with user id `peer` may use the control socket of a process run by `owner`.
pub fn allowed(peer: u32, owner: u32) -> bool {
    peer == owner || peer == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_and_root_are_allowed() {
        assert!(allowed(1000, 1000));
        assert!(allowed(0, 1000));
        assert!(!allowed(65534, 1000));
        assert!(!allowed(1001, 1000));
    }

    #[test]
    fn paths() {
        assert_eq!(
            socket_path(1000, 42),
            PathBuf::from("/tmp/corun-1000/42.sock")
        );
    }
}
