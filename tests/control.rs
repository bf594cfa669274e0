//! `corun dump PID`: the control socket, the JSON dump, and who may use it.

mod support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{wait_for, Child};

const CORUN: &str = env!("CARGO_BIN_EXE_corun");

#[inline(never)]
fn blocked_in_read(mut stream: TcpStream) -> usize {
    let mut buf = [0u8; 16];
    stream.read(&mut buf).unwrap_or(0)
}

#[inline(never)]
fn blocked_in_sleep() {
    std::thread::sleep(Duration::from_secs(600));
}

#[inline(never)]
fn blocked_on_mutex(lock: Arc<Mutex<u32>>) -> u32 {
    *lock.lock().unwrap()
}

/// Runs `corun dump` with `args`; returns (exit code, stdout, stderr).
fn corun_dump(args: &[&str], configure: impl FnOnce(&mut Command)) -> (i32, String, String) {
    let mut command = Command::new(CORUN);
    command.arg("dump").args(args).env_remove("LD_PRELOAD");
    configure(&mut command);
    let out = command.output().expect("cannot run corun dump");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Spawns the four named coroutines the dump tests look at and waits until they block; keeps
/// what must stay alive.
fn four_blocked_coroutines() -> impl Drop {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let lock = Arc::new(Mutex::new(3));
    let guard = lock.lock().unwrap();
    let reader = corun::Builder::new()
        .name("reader".into())
        .spawn(move || blocked_in_read(server))
        .unwrap();
    let sleeper = corun::Builder::new()
        .name("sleeper".into())
        .spawn(blocked_in_sleep)
        .unwrap();
    let locker = corun::Builder::new()
        .name("locker".into())
        .spawn({
            let lock = lock.clone();
            move || blocked_on_mutex(lock)
        })
        .unwrap();
    let joiner = corun::Builder::new()
        .name("joiner".into())
        .spawn(move || sleeper.join().is_ok())
        .unwrap();
    wait_for("all four to block", Duration::from_secs(5), || {
        let s = corun::stats().unwrap();
        s.fd_waiters == 1 && s.futex_waiters == 1 && s.runnable.iter().sum::<usize>() == 0
    });
    std::thread::sleep(Duration::from_millis(100));
    // Leaked on purpose: the child exits with them still blocked.
    struct Keep(Vec<Box<dyn std::any::Any>>);
    impl Drop for Keep {
        fn drop(&mut self) {
            for item in self.0.drain(..) {
                std::mem::forget(item);
            }
        }
    }
    std::mem::forget(guard);
    Keep(vec![
        Box::new(client),
        Box::new(lock),
        Box::new(reader),
        Box::new(locker),
        Box::new(joiner),
    ])
}

fn coroutine<'a>(dump: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    dump["coroutines"]
        .as_array()
        .expect("coroutines is an array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no coroutine {name:?} in {dump:#}"))
}

fn has_frame(c: &serde_json::Value, function: &str) -> bool {
    c["backtrace"].as_array().is_some_and(|frames| {
        frames
            .iter()
            .any(|f| f["function"].as_str().is_some_and(|s| s.contains(function)))
    })
}

#[test]
fn dump_pid_json_names_each_coroutine_and_what_it_waits_on() {
    Child::new("dump_pid_json_names_each_coroutine_and_what_it_waits_on")
        .env("CORUN_WORKERS", "2")
        .run(|| {
            let _keep = four_blocked_coroutines();
            let pid = std::process::id().to_string();
            let (code, stdout, stderr) = corun_dump(&[&pid, "--json"], |_| {});
            assert_eq!(code, 0, "corun dump failed: {stderr}");
            let dump: serde_json::Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}"));
            assert_eq!(dump["format"], "corun-dump");
            assert_eq!(dump["version"], 1);
            assert_eq!(dump["pid"], std::process::id());
            let runtime = &dump["runtime"];
            assert_eq!(runtime["workers"], 2, "{runtime}");
            assert_eq!(runtime["identity"], "isolated", "{runtime}");
            assert_eq!(runtime["counters"]["live"], 4, "{runtime}");
            assert_eq!(runtime["counters"]["fd_waiters"], 1, "{runtime}");

            let reader = coroutine(&dump, "reader");
            assert_eq!(reader["state"], "parked", "{reader}");
            assert_eq!(reader["wait"]["kind"], "fd", "{reader}");
            assert_eq!(reader["wait"]["direction"], "read", "{reader}");
            assert!(reader["wait"]["fd"].as_i64().unwrap() > 2, "{reader}");
            assert!(reader["for_ms"].as_u64().unwrap() >= 50, "{reader}");
            assert!(has_frame(reader, "recv"), "{reader}");
            assert!(has_frame(reader, "blocked_in_read"), "{reader}");
            let frame = &reader["backtrace"][0];
            assert!(
                frame["function"].is_string() && frame.get("line").is_some(),
                "{frame}"
            );

            let sleeper = coroutine(&dump, "sleeper");
            assert_eq!(sleeper["wait"]["kind"], "sleep", "{sleeper}");
            let left = sleeper["wait"]["deadline_in_ms"].as_i64().unwrap();
            assert!((500_000..=600_000).contains(&left), "{sleeper}");
            assert!(has_frame(sleeper, "nanosleep"), "{sleeper}");

            let locker = coroutine(&dump, "locker");
            assert_eq!(locker["wait"]["kind"], "futex", "{locker}");
            assert_eq!(locker["wait"]["shared"], false, "{locker}");
            assert!(locker["wait"]["address"]
                .as_str()
                .unwrap()
                .starts_with("0x"));
            assert!(locker["wait"]["deadline_in_ms"].is_null(), "{locker}");
            assert!(has_frame(locker, "blocked_on_mutex"), "{locker}");

            let joiner = coroutine(&dump, "joiner");
            assert_eq!(joiner["wait"]["kind"], "join", "{joiner}");
            assert_eq!(joiner["wait"]["coroutine"], sleeper["id"], "{joiner}");

            // The text dump, through the same socket; the program carries on.
            let (code, text, stderr) = corun_dump(&[&pid], |_| {});
            assert_eq!(code, 0, "{stderr}");
            assert!(
                text.starts_with("corun: coroutine dump: 4 live coroutine(s)"),
                "{text}"
            );
            assert!(text.contains("'locker' — parked on worker"), "{text}");
            assert!(corun::stats().unwrap().dumps >= 2);
            println!("dumped twice");
        });
}

/// Runs `body` on a new OS thread whose credentials (only that thread's: the raw system call,
/// not glibc's process-wide setresuid) are user and group `nobody`.
fn as_nobody<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: raw setresgid/setresuid on this thread only; it ends after `body`.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
        }
        body()
    })
    .join()
    .unwrap()
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn another_user_is_refused_and_learns_nothing() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Running the client as another user needs root; CI runs as root.
        eprintln!("not root: cannot run the client as another user; checking the rule only");
        assert!(!corun::control::allowed(65534, 1000));
        return;
    }
    Child::new("another_user_is_refused_and_learns_nothing").run(|| {
        let _keep = four_blocked_coroutines();
        let pid = std::process::id();
        // The client says why, and prints nothing of the dump.
        let (code, stdout, stderr) = corun_dump(&[&pid.to_string(), "--json"], |c| {
            use std::os::unix::process::CommandExt;
            c.uid(65534).gid(65534);
        });
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("belongs to another user"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");

        // A direct connection: the private directory stops it.
        let path = corun::control::socket_path(0, pid);
        let direct = {
            let path = path.clone();
            as_nobody(move || std::os::unix::net::UnixStream::connect(path).map(drop))
        };
        let err = direct.expect_err("another user connected to the control socket");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");

        // With the directory and the socket opened up (as a careless admin might), the
        // runtime's credentials check still answers nothing.
        let dir = corun::control::socket_dir(0);
        chmod(&dir, 0o711);
        chmod(&path, 0o666);
        let answer = {
            let path = path.clone();
            as_nobody(move || {
                use std::io::Write;
                let mut stream = std::os::unix::net::UnixStream::connect(path)
                    .expect("with the directory opened, another user can connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                // The runtime may close before or after reading this: either way, no answer.
                let _ = stream.write_all(corun::control::REQUEST_JSON);
                let mut answer = Vec::new();
                stream.read_to_end(&mut answer).map(|_| answer)
            })
        };
        chmod(&dir, 0o700);
        chmod(&path, 0o600);
        match answer {
            Ok(bytes) => assert!(bytes.is_empty(), "another user got {} bytes", bytes.len()),
            Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
        }
        // The owner still gets the dump.
        let (code, stdout, stderr) = corun_dump(&[&pid.to_string()], |_| {});
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("'reader'"), "{stdout}");
        println!("refused");
    });
}

#[test]
fn bad_and_non_corun_pids_get_one_line_errors() {
    let (code, _, stderr) = corun_dump(&["0"], |_| {});
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("\"0\" is not a process id"), "{stderr}");
    let (code, _, stderr) = corun_dump(&["12x"], |_| {});
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = corun_dump(&[], |_| {});
    assert_eq!(code, 2);
    assert!(stderr.contains("missing PID"), "{stderr}");
    let (code, _, stderr) = corun_dump(&["1", "--yaml"], |_| {});
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown option \"--yaml\""), "{stderr}");

    // A pid that is not running (the highest one possible, unused).
    let (code, _, stderr) = corun_dump(&["4194304"], |_| {});
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with("corun: no process 4194304"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // A live process that is no corun program (its pid may have a stale socket of an earlier
    // corun process that did not exit normally: the same answer).
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let (code, _, stderr) = corun_dump(&[&sleeper.id().to_string()], |_| {});
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is not a corun program"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn corun_control_0_turns_the_socket_off() {
    Child::new("corun_control_0_turns_the_socket_off")
        .env("CORUN_CONTROL", "0")
        .run(|| {
            corun::spawn(|| ()).join().unwrap();
            let pid = std::process::id().to_string();
            let (code, _, stderr) = corun_dump(&[&pid], |_| {});
            assert_eq!(code, 1, "{stderr}");
            assert!(stderr.contains("CORUN_CONTROL=0"), "{stderr}");
            println!("off");
        });
}

#[test]
fn sockets_of_processes_that_are_gone_are_swept_at_start() {
    const NAME: &str = "sockets_of_processes_that_are_gone_are_swept_at_start";
    // SAFETY: no preconditions.
    let uid = unsafe { libc::geteuid() };
    let dir = corun::control::socket_dir(uid);
    // A pid above the kernel's maximum: no process has it.
    let stale = dir.join("4194305.sock");
    if !support::is_child(NAME) {
        // The directory exists once a corun process of this user has started; if not, make
        // it as private as the runtime wants it.
        if !dir.exists() {
            std::fs::create_dir(&dir).unwrap();
            chmod(&dir, 0o700);
        }
        let _ = std::fs::remove_file(&stale);
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
    }
    let Some(_) = Child::new(NAME).run(|| {
        // Starting the runtime opens this process's socket and sweeps the dead ones.
        corun::spawn(|| ()).join().unwrap();
    }) else {
        return;
    };
    assert!(!stale.exists(), "{} was left", stale.display());
}
