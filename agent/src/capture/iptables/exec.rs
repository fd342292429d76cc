//! Runs iptables commands, or renders them as a script.

use std::process::{Command as Process, Stdio};

use super::rules::{Command, Mode};

pub use super::rules::script;

/// Runs `commands` in order; the first that must succeed and fails stops the run, named in the
/// error with iptables' own message.
pub fn run(commands: &[Command]) -> Result<(), String> {
    for c in commands {
        match &c.mode {
            Mode::Run => invoke(c.program, &c.args)?,
            Mode::MayFail => {
                let _ = invoke(c.program, &c.args);
            }
            Mode::Unless(check) => {
                if !succeeds(c.program, check)? {
                    invoke(c.program, &c.args)?;
                }
            }
            Mode::While(check) => {
                // Bounded: each round deletes one copy of the rule.
                for _ in 0..64 {
                    if !succeeds(c.program, check)? {
                        break;
                    }
                    invoke(c.program, &c.args)?;
                }
            }
        }
    }
    Ok(())
}

fn render(program: &str, args: &[String]) -> String {
    format!("{program} {}", args.join(" "))
}

fn invoke(program: &str, args: &[String]) -> Result<(), String> {
    let out = Process::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            render(program, args),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether a check command succeeds; an error only if the program cannot run at all.
fn succeeds(program: &str, args: &[String]) -> Result<bool, String> {
    Process::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .map_err(|e| format!("cannot run {program}: {e}"))
}
