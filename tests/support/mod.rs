//! The bundled server binary as the end-to-end tests run it: built (or found up to date) once,
//! started on a loopback port with its `listening …` line read back, signalled, waited for.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for the server to start or stop before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The path of the example binary, built (or found up to date) once per test run.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/<profile>/deps/chat_server-HASH → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps");
        let binary = profile_dir
            .join("examples")
            .join(format!("chat_server{}", std::env::consts::EXE_SUFFIX));
        build_example(profile_dir);
        assert!(binary.exists(), "no server binary at {}", binary.display());
        binary
    })
}

fn build_example(profile_dir: &Path) {
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--quiet",
            "--example",
            "chat_server",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(other) => {
            cargo.args(["--profile", other]);
        }
        None => {}
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building the example failed: {status}");
}

/// A running server process; killed (SIGKILL) if a test fails while it runs.
pub struct ServerProcess {
    child: Option<Child>,
    pub pid: u32,
    pub url: String,
    pub addr: String,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary with `args` (plus `--ws 127.0.0.1:0 --tcp off`) and waits for its
    /// `listening ws://…/chat` line.
    pub fn start(args: &[&str]) -> ServerProcess {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("stderr.log");
        let mut child = Command::new(server_binary())
            .args(["--ws", "127.0.0.1:0", "--tcp", "off"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the server starts");
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => {
                        if lines.send(line).is_err() {
                            // Nobody listens any more; keep draining so the server never blocks.
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let mut process = ServerProcess {
            child: Some(child),
            pid,
            url: String::new(),
            addr: String::new(),
            log,
            _log_dir: log_dir,
        };
        let line = match received.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(error) => panic!(
                "no `listening` line ({error}); stderr:\n{}",
                process.stderr()
            ),
        };
        let url = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the first line is `listening …`: {line:?}"));
        let addr = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.strip_suffix("/chat"))
            .unwrap_or_else(|| panic!("a ws://HOST:PORT/chat URL: {url:?}"));
        assert!(
            addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
            "the real port: {addr}"
        );
        process.url = url.to_owned();
        process.addr = addr.to_owned();
        process
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.pid);
    }

    /// Waits for the process to exit; returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("the process was not waited for yet");
        let (done, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait());
        });
        match exited.recv_timeout(PATIENCE) {
            Ok(status) => status.expect("waiting for the server"),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(self.pid.to_string())
                    .status();
                panic!(
                    "the server did not exit in time; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
