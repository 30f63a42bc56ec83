//! A `plughost` process the test talks to while it runs: stdin kept open and
//! written line by line, stdout read as it comes, signals sent by pid.
//!
//! [`crate::support::run_binary`] feeds all of stdin at once and waits for
//! the exit; the tests of streaming input and of shutdown on a signal need to
//! act *between* outputs, which is what [`Live`] is for. Every wait is bounded
//! and fails the test with the output so far.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Run, binary};

/// How long any wait for the process may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A running `plughost`.
pub struct Live {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Live {
    /// Spawns `plughost ARGS` with piped stdin, stdout and stderr.
    pub fn spawn(args: &[&str]) -> Live {
        Live::spawn_with_env(args, &[])
    }

    /// Like [`Live::spawn`] with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Live {
        let mut child = Command::new(binary())
            .args(args)
            .env("PLUGHOST_LOG", "info")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plughost");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Live {
            stdin: child.stdin.take(),
            child,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one JSON line to stdin and flushes it.
    pub fn send(&mut self, line: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{line}").expect("write to plughost's stdin");
        stdin.flush().expect("flush plughost's stdin");
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `kill -SIG pid` (`sig` like `TERM`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Tapped events read so far.
    pub fn events(&self) -> Vec<Value> {
        self.stdout.iter().map(|l| parse(l)).collect()
    }

    /// Reads stdout until a tapped event satisfies `pred` (checking the ones
    /// already read first) and returns it; fails the test after [`LIMIT`].
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_within(what, LIMIT, pred)
    }

    /// Reads whatever stdout brings for `span` (never fails): afterwards
    /// [`Live::events`] holds it.
    pub fn read_for(&mut self, span: Duration) {
        let deadline = Instant::now() + span;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => return,
            }
        }
    }

    /// [`Live::wait_for`] with a limit of its own (for what takes longer by
    /// design, like a redelivery after a server-side timeout).
    pub fn wait_for_within(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
            return e;
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let event = parse(&line);
                    self.stdout.push(line);
                    if pred(&event) {
                        return event;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {what} on stdout within {limit:?}; so far:\n{}",
                        self.stdout.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "plughost closed stdout before {what}; so far:\n{}",
                        self.stdout.join("\n")
                    )
                }
            }
        }
    }

    /// Waits (up to [`LIMIT`], then kills it) for the process to exit and
    /// returns everything it printed. Stdin stays open until then unless
    /// [`Live::close_stdin`] was called: a host told to stop by a signal
    /// must not need an end of input to exit.
    pub fn finish(mut self) -> Run {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait plughost") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.stdin = None;
        // The process is gone: stdout ends, so this loop ends.
        while let Ok(line) = self.lines.recv_timeout(LIMIT) {
            self.stdout.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let run = Run {
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout: self.stdout.iter().map(|l| format!("{l}\n")).collect(),
            stderr,
        };
        assert!(
            status.is_some(),
            "plughost still running after {LIMIT:?}; killed\n{run}"
        );
        run
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // A failed test must not leave the process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
}
