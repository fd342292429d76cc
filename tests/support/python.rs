//! Python scripts that drive the agent with real third-party clients, spoken to one line at a
//! time over stdin and stdout (`tests/toxiproxy_client.py`, `tests/grpc_client.py`).
//!
//! The interpreter is `$FAULTLINE_TEST_PYTHON`, or `target/test-venv/bin/python` in the
//! workspace, which `scripts/test.sh` sets up. [`interpreter`] fails the test when it is missing
//! or lacks a script's client library: such a test never skips silently. [`PyScript`] runs one
//! script; when it goes wrong, [`PyScript::fail`] stops it and panics with what it wrote to
//! stderr.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a failing script may take to exit on its own before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// What a script needs from the interpreter.
pub struct Requirement {
    /// Python code that fails without the client library, e.g. `import toxiproxy`.
    pub import: &'static str,
    /// The library's modules, as the failure names them.
    pub modules: &'static str,
    /// How to get them, which ends the failure message.
    pub setup: &'static str,
}

/// The interpreter to run scripts with. Fails (never skips) unless it runs and meets `needs`.
pub async fn interpreter(needs: &Requirement) -> PathBuf {
    let python = std::env::var_os("FAULTLINE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python")
        });
    let setup = needs.setup;
    let out = Command::new(&python)
        .args(["-c", needs.import])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {setup}", python.display()));
    assert!(
        out.status.success(),
        "{} cannot import {}: {}; {setup}",
        python.display(),
        needs.modules,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    python
}

/// Why [`PyScript::next_line`] has no line.
#[derive(Debug)]
pub enum NoLine {
    /// The script closed its stdout.
    Ended,
    Unreadable(io::Error),
    /// Nothing came within the step timeout, which this holds.
    TimedOut(Duration),
}

// === impl PyScript ===

/// A running script in `tests/`, with its stdin, stdout and stderr piped. It is killed if
/// dropped while still running.
pub struct PyScript {
    /// The script's file name, which starts every failure message.
    name: &'static str,
    child: Child,
    /// `None` once closed, which tells a script that reads to the end of its input to exit.
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// How long the script may take to write its next line, or to exit.
    step_timeout: Duration,
}

impl PyScript {
    /// Starts `tests/{name}` with `python` and `args`.
    pub fn spawn<I>(python: &Path, name: &'static str, args: I, step_timeout: Duration) -> PyScript
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(name);
        let mut child = Command::new(python)
            .arg(&path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", python.display(), path.display()));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        PyScript {
            name,
            child,
            stdin,
            stdout,
            step_timeout,
        }
    }

    /// Writes `line` and a newline to the script's stdin.
    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the script's stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the script");
        stdin.flush().await.unwrap();
    }

    /// The script's next line of stdout, waiting at most the step timeout. The caller names what
    /// it waited for in [`PyScript::fail`].
    pub async fn next_line(&mut self) -> Result<String, NoLine> {
        match tokio::time::timeout(self.step_timeout, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err(NoLine::Ended),
            Ok(Err(e)) => Err(NoLine::Unreadable(e)),
            Err(_) => Err(NoLine::TimedOut(self.step_timeout)),
        }
    }

    /// Closes stdin and expects the script to exit successfully within the step timeout.
    pub async fn finish(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(self.step_timeout, self.child.wait())
            .await
            .expect("the script exits")
            .unwrap();
        if !status.success() {
            self.fail(&format!("exited with {status}")).await;
        }
    }

    /// Stops the script and panics with `what` and whatever it wrote to stderr.
    pub async fn fail(&mut self, what: &str) -> ! {
        if tokio::time::timeout(EXIT_GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr).await;
        }
        panic!(
            "{}: {what}\n--- stderr ---\n{}",
            self.name,
            stderr.trim_end()
        );
    }
}
