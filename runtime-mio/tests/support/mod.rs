//! Helpers for the end-to-end tests in `tests/netns.rs`: child processes
//! that are always reaped, commands with a deadline, the tools the tests
//! drive, and polling.
//!
//! Everything a test starts is owned by a guard whose `Drop` undoes it
//! (kills the process, deletes the namespace, removes the directory), so a
//! failing assertion cleans up as well as a passing test.

#![allow(dead_code)] // each test binary uses its own subset

pub mod customers;
pub mod net;
pub mod node;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Prefix of every namespace and temp directory these tests create,
/// followed by the test process's pid.
pub const PREFIX: &str = "sdte2e-";

/// Whether `name` is a namespace or temp directory of a test run whose
/// process is gone (killed before its guards could run).
fn left_by_a_dead_run(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let pid = rest.split('-').next().unwrap_or("");
    pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists()
}

static SWEEP: std::sync::Once = std::sync::Once::new();

/// Once per run: removes what killed runs left behind.
pub fn sweep_stale_once() {
    SWEEP.call_once(|| {
        net::sweep_stale_namespaces();
        if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in dir.flatten() {
                if left_by_a_dead_run(&entry.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}

/// A temp directory `sdte2e-<pid>-XXXX`, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    sweep_stale_once();
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir()
        .expect("temp dir")
}

/// The `sdt` binary under test.
pub const SDT: &str = env!("CARGO_BIN_EXE_sdt");

/// The programs the tests drive and the Debian package of each (all listed
/// in `scripts/install-deps.sh`).
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("ss", "iproute2"),
    ("dnsmasq", "dnsmasq-base"),
    ("dig", "dnsutils"),
    ("socat", "socat"),
    ("nc", "netcat-openbsd"),
    ("logger", "bsdutils"),
    ("setpriv", "util-linux"),
    ("groupadd", "passwd"),
    ("groupdel", "passwd"),
    ("capsh", "libcap2-bin"),
    ("sysctl", "procps"),
    ("systemd-analyze", "systemd"),
    ("bash", "bash"),
    ("zsh", "zsh"),
    ("fish", "fish"),
    ("mandoc", "mandoc"),
    ("promtool", "prometheus"),
    ("python3", "python3"),
    ("curl", "curl"),
    ("iperf3", "iperf3"),
];

/// Fails the test, naming the package, if `tool` is not on `PATH`.
pub fn require_tool(tool: &str) {
    let package = TOOLS
        .iter()
        .find(|(t, _)| *t == tool)
        .map_or("?", |(_, p)| p);
    assert!(
        find_on_path(tool).is_some(),
        "`{tool}` is not on PATH: install the Debian package {package} \
         (scripts/install-deps.sh does)"
    );
}

/// Fails the test unless it runs as root: network namespaces, veth pairs and
/// TUN devices need it. These tests do not skip: CI runs them as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the end-to-end tests in tests/netns.rs need root (network namespaces, veth, TUN); \
         run `cargo test -p sdt` as root"
    );
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The result of a command run to completion or to its deadline.
#[derive(Debug)]
pub struct Ran {
    /// `None` if it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => writeln!(f, "exit: {s}")?,
            None => writeln!(f, "exit: killed at its deadline")?,
        }
        write!(f, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` with stdin from /dev/null, killing it at `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Ran {
    run_input(cmd, None, timeout)
}

/// Runs `cmd` with `input` (if any) on its stdin, killing it at `timeout`.
pub fn run_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Ran {
    let out = tempfile::tempfile().expect("temp file");
    let err = tempfile::tempfile().expect("temp file");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small inputs fit in the pipe; a program that exits early just
        // breaks it.
        let _ = stdin.write_all(input);
    }
    let status = wait_deadline(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ran {
        status,
        stdout: read_all(out),
        stderr: read_all(err),
    }
}

/// Runs `cmd` and fails the test unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Ran {
    let what = format!("{cmd:?}");
    let ran = run(cmd, Duration::from_secs(10));
    assert!(ran.ok(), "{what} failed:\n{ran}");
    ran
}

fn read_all(mut f: File) -> String {
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_string(&mut s);
    s
}

fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// Polls `f` every few milliseconds until it holds or `timeout` passes;
/// returns whether it held.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long-running child process, stopped when dropped: SIGTERM, then
/// SIGKILL if it has not exited within two seconds. Its stdout and stderr
/// go to files in the test's directory.
pub struct Proc {
    pub name: String,
    child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd`; `stdin_pipe` gives it a pipe the test writes to
    /// (otherwise /dev/null).
    pub fn spawn(name: &str, dir: &Path, cmd: &mut Command, stdin_pipe: bool) -> Proc {
        let stdout_path = dir.join(format!("{name}.stdout"));
        let stderr_path = dir.join(format!("{name}.stderr"));
        let child = cmd
            .stdin(if stdin_pipe {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(File::create(&stdout_path).expect("stdout file"))
            .stderr(File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let mut p = Proc {
            name: name.to_owned(),
            child,
            stdin: None,
            stdout_path,
            stderr_path,
            exited: None,
        };
        p.stdin = p.child.stdin.take();
        p
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit; `None` if it
    /// did not (it is then killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet
        // (so not reused).
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let status = wait_deadline(&mut self.child, timeout);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.exited = status.or(self.exited);
        status
    }

    /// Sends SIGTERM and asserts that it exits with success within 5 s:
    /// the clean stop every `sdt run` test ends with.
    pub fn terminate_ok(&mut self) {
        let status = self.terminate(Duration::from_secs(5));
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}: {}",
            self.describe()
        );
    }

    /// Its name, whether it exited, and its stderr, for failure messages.
    pub fn describe(&mut self) -> String {
        let state = match self.exited() {
            Some(s) => format!("exited: {s}"),
            None => "running".to_owned(),
        };
        format!("{} ({state}), stderr:\n{}", self.name, self.stderr_text())
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            // Killed and reaped in terminate if SIGTERM was not enough.
            let _ = self.terminate(Duration::from_secs(2));
        }
    }
}

/// A `Command` that runs `program` inside network namespace `ns`. It is
/// killed if the thread that starts it exits first (say the test binary
/// is killed), so nothing outlives a test even without its guards.
pub fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    die_with_parent(&mut c);
    c
}

/// Makes the child get SIGKILL when the thread that spawned it exits.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
