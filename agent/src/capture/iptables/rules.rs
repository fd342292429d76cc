//! From options to iptables commands, as data, so they can be run, printed and tested alike.
//!
//! Per address family (iptables, and ip6tables with `--ipv6`), in the nat table:
//! - outbound: `OUTPUT -p tcp -j FAULTLINE_OUTPUT`; the chain returns for the exempt mark and
//!   UIDs, loopback destinations, excluded ports and networks, and redirects the rest to the
//!   outbound port.
//! - inbound: `PREROUTING -p tcp -j FAULTLINE_INBOUND`; the chain returns for the capture
//!   ports themselves and excluded ports, and redirects the captured ports to the inbound port.
//!
//! A run creates a chain if missing, flushes and refills it, and adds its jump only if absent,
//! so running twice leaves one copy of everything. A direction turned off, and `--cleanup`,
//! delete every copy of the jump, then flush and delete the chain.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::args::{InboundPorts, Options};

pub const OUTBOUND_CHAIN: &str = "FAULTLINE_OUTPUT";
pub const INBOUND_CHAIN: &str = "FAULTLINE_INBOUND";

/// How a command's exit status is treated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Must succeed.
    Run,
    /// May fail (creating a chain that exists, removing one that does not).
    MayFail,
    /// Runs only if `check` (the same binary) fails: adds a rule once.
    Unless(Vec<String>),
    /// Runs as long as `check` succeeds: deletes every copy of a rule.
    While(Vec<String>),
}

/// One iptables invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// `iptables` or `ip6tables`.
    pub program: &'static str,
    pub args: Vec<String>,
    pub mode: Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn program(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }

    fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        )
    }
}

/// The commands `options` call for, in order.
pub fn plan(options: &Options) -> Vec<Command> {
    let mut families = vec![Family::V4];
    if options.ipv6 {
        families.push(Family::V6);
    }
    let mut out = Vec::new();
    for family in families {
        let mut b = Builder {
            family,
            out: &mut out,
        };
        let jump_out = ["OUTPUT", "-p", "tcp", "-j", OUTBOUND_CHAIN];
        let jump_in = ["PREROUTING", "-p", "tcp", "-j", INBOUND_CHAIN];
        if options.outbound && !options.cleanup {
            b.chain(OUTBOUND_CHAIN, outbound_rules(options, family));
            b.jump(&jump_out);
        } else {
            b.remove(OUTBOUND_CHAIN, &jump_out);
        }
        if options.inbound && !options.cleanup {
            b.chain(INBOUND_CHAIN, inbound_rules(options));
            b.jump(&jump_in);
        } else {
            b.remove(INBOUND_CHAIN, &jump_in);
        }
    }
    out
}

fn outbound_rules(o: &Options, family: Family) -> Vec<Vec<String>> {
    let mut rules: Vec<Vec<String>> = Vec::new();
    if let Some(mark) = o.mark {
        rules.push(words(&format!("-m mark --mark {mark:#x} -j RETURN")));
    }
    for uid in &o.uids {
        rules.push(words(&format!("-m owner --uid-owner {uid} -j RETURN")));
    }
    rules.push(words(&format!("-d {} -j RETURN", family.loopback())));
    for port in &o.exclude_outbound_ports {
        rules.push(words(&format!("-p tcp --dport {port} -j RETURN")));
    }
    for net in o.exclude_outbound_cidrs.iter().filter(|n| family.holds(n)) {
        rules.push(words(&format!("-d {net} -j RETURN")));
    }
    rules.push(words(&format!(
        "-p tcp -j REDIRECT --to-ports {}",
        o.outbound_port
    )));
    rules
}

fn inbound_rules(o: &Options) -> Vec<Vec<String>> {
    let mut rules: Vec<Vec<String>> = Vec::new();
    // Connections already addressed to a capture port are the agent's, never redirected again.
    let mut own = vec![o.inbound_port, o.outbound_port];
    own.dedup();
    for port in own.iter().chain(&o.exclude_inbound_ports) {
        rules.push(words(&format!("-p tcp --dport {port} -j RETURN")));
    }
    match &o.inbound_ports {
        InboundPorts::All => rules.push(words(&format!(
            "-p tcp -j REDIRECT --to-ports {}",
            o.inbound_port
        ))),
        InboundPorts::Only(ports) => {
            for port in ports {
                rules.push(words(&format!(
                    "-p tcp --dport {port} -j REDIRECT --to-ports {}",
                    o.inbound_port
                )));
            }
        }
    }
    rules
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

struct Builder<'a> {
    family: Family,
    out: &'a mut Vec<Command>,
}

impl Builder<'_> {
    fn nat(&self, op: &str, rest: &[&str]) -> Vec<String> {
        ["-t", "nat", op]
            .iter()
            .chain(rest)
            .map(|s| (*s).to_owned())
            .collect()
    }

    fn push(&mut self, args: Vec<String>, mode: Mode) {
        self.out.push(Command {
            program: self.family.program(),
            args,
            mode,
        });
    }

    /// Creates `chain` if missing, then flushes and refills it.
    fn chain(&mut self, chain: &str, rules: Vec<Vec<String>>) {
        self.push(self.nat("-N", &[chain]), Mode::MayFail);
        self.push(self.nat("-F", &[chain]), Mode::Run);
        for rule in rules {
            let mut args = self.nat("-A", &[chain]);
            args.extend(rule);
            self.push(args, Mode::Run);
        }
    }

    /// Adds the jump `rule` (`CHAIN spec...`) unless present.
    fn jump(&mut self, rule: &[&str]) {
        let check = self.nat("-C", rule);
        self.push(self.nat("-A", rule), Mode::Unless(check));
    }

    /// Deletes every copy of the jump, then the chain.
    fn remove(&mut self, chain: &str, jump: &[&str]) {
        let check = self.nat("-C", jump);
        self.push(self.nat("-D", jump), Mode::While(check));
        self.push(self.nat("-F", &[chain]), Mode::MayFail);
        self.push(self.nat("-X", &[chain]), Mode::MayFail);
    }
}

/// The commands as a POSIX shell script (what `--dry-run` prints); running it has the same
/// effect as running the commands.
pub fn script(commands: &[Command]) -> String {
    let mut out = String::new();
    for c in commands {
        let line = |args: &[String]| format!("{} {}", c.program, args.join(" "));
        let _ = match &c.mode {
            Mode::Run => writeln!(out, "{}", line(&c.args)),
            Mode::MayFail => writeln!(out, "{} 2>/dev/null || true", line(&c.args)),
            Mode::Unless(check) => {
                writeln!(out, "{} 2>/dev/null || {}", line(check), line(&c.args))
            }
            Mode::While(check) => writeln!(
                out,
                "while {} 2>/dev/null; do {}; done",
                line(check),
                line(&c.args)
            ),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::capture::iptables::IptablesArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: IptablesArgs,
    }

    fn options(flags: &[&str]) -> Result<Options, crate::config::ConfigError> {
        let argv = std::iter::once("init-iptables").chain(flags.iter().copied());
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .args
            .options()
    }

    fn dry_run(flags: &[&str]) -> String {
        script(&plan(&options(flags).unwrap()))
    }

    #[test]
    fn outbound_and_inbound_rules_with_exemptions_and_exclusions() {
        let s = dry_run(&[
            "--mark",
            "0x539",
            "--uid",
            "1337",
            "--exclude-outbound-ports",
            "22,8081",
            "--exclude-outbound-cidrs",
            "169.254.169.254,fd00::/8",
            "--exclude-inbound-ports",
            "8474",
        ]);
        let expected = "\
iptables -t nat -N FAULTLINE_OUTPUT 2>/dev/null || true
iptables -t nat -F FAULTLINE_OUTPUT
iptables -t nat -A FAULTLINE_OUTPUT -m mark --mark 0x539 -j RETURN
iptables -t nat -A FAULTLINE_OUTPUT -m owner --uid-owner 1337 -j RETURN
iptables -t nat -A FAULTLINE_OUTPUT -d 127.0.0.0/8 -j RETURN
iptables -t nat -A FAULTLINE_OUTPUT -p tcp --dport 22 -j RETURN
iptables -t nat -A FAULTLINE_OUTPUT -p tcp --dport 8081 -j RETURN
iptables -t nat -A FAULTLINE_OUTPUT -d 169.254.169.254/32 -j RETURN
iptables -t nat -A FAULTLINE_OUTPUT -p tcp -j REDIRECT --to-ports 15001
iptables -t nat -C OUTPUT -p tcp -j FAULTLINE_OUTPUT 2>/dev/null || iptables -t nat -A OUTPUT -p tcp -j FAULTLINE_OUTPUT
iptables -t nat -N FAULTLINE_INBOUND 2>/dev/null || true
iptables -t nat -F FAULTLINE_INBOUND
iptables -t nat -A FAULTLINE_INBOUND -p tcp --dport 15006 -j RETURN
iptables -t nat -A FAULTLINE_INBOUND -p tcp --dport 15001 -j RETURN
iptables -t nat -A FAULTLINE_INBOUND -p tcp --dport 8474 -j RETURN
iptables -t nat -A FAULTLINE_INBOUND -p tcp -j REDIRECT --to-ports 15006
iptables -t nat -C PREROUTING -p tcp -j FAULTLINE_INBOUND 2>/dev/null || iptables -t nat -A PREROUTING -p tcp -j FAULTLINE_INBOUND
";
        assert_eq!(s, expected);
    }

    #[test]
    fn reruns_are_idempotent_by_construction() {
        // Every rule goes into a chain that the same run flushed first; the only rules outside
        // the chains (the jumps) are guarded by a check.
        let commands = plan(&options(&["--uid", "0", "--ipv6"]).unwrap());
        let mut flushed = std::collections::HashSet::new();
        for c in &commands {
            let a: Vec<&str> = c.args.iter().map(String::as_str).collect();
            match a.as_slice() {
                ["-t", "nat", "-F", chain] => {
                    flushed.insert((c.program, chain.to_string()));
                }
                ["-t", "nat", "-A", chain, ..] if chain.starts_with("FAULTLINE_") => {
                    assert!(flushed.contains(&(c.program, chain.to_string())), "{a:?}");
                    assert_eq!(c.mode, Mode::Run);
                }
                ["-t", "nat", "-A", ..] => {
                    assert!(matches!(c.mode, Mode::Unless(_)), "unguarded {a:?}")
                }
                _ => {}
            }
        }
        assert!(commands.iter().any(|c| c.program == "ip6tables"
            && c.args.join(" ") == "-t nat -A FAULTLINE_OUTPUT -d ::1/128 -j RETURN"));
    }

    #[test]
    fn only_listed_inbound_ports_and_ipv6_networks_by_family() {
        let s = dry_run(&[
            "--mark",
            "7",
            "--no-outbound",
            "--inbound-ports",
            "8080,9090",
            "--inbound-port",
            "16006",
        ]);
        assert!(s.contains("iptables -t nat -A FAULTLINE_INBOUND -p tcp --dport 8080 -j REDIRECT --to-ports 16006\n"), "{s}");
        assert!(s.contains("iptables -t nat -A FAULTLINE_INBOUND -p tcp --dport 9090 -j REDIRECT --to-ports 16006\n"), "{s}");
        assert!(!s.contains("-p tcp -j REDIRECT --to-ports 16006"), "{s}");
        // Outbound off: whatever an earlier run left is removed.
        assert!(s.starts_with("while iptables -t nat -C OUTPUT -p tcp -j FAULTLINE_OUTPUT 2>/dev/null; do iptables -t nat -D OUTPUT -p tcp -j FAULTLINE_OUTPUT; done\n"), "{s}");
        let s = dry_run(&[
            "--uid",
            "0",
            "--ipv6",
            "--exclude-outbound-cidrs",
            "10.0.0.0/8,fd00::/8",
        ]);
        assert!(s.contains("iptables -t nat -A FAULTLINE_OUTPUT -d 10.0.0.0/8 -j RETURN"));
        assert!(s.contains("ip6tables -t nat -A FAULTLINE_OUTPUT -d fd00::/8 -j RETURN"));
        assert!(!s.contains("ip6tables -t nat -A FAULTLINE_OUTPUT -d 10.0.0.0/8"));
        assert!(!s.contains("iptables -t nat -A FAULTLINE_OUTPUT -d fd00::/8"));
    }

    #[test]
    fn cleanup_removes_every_jump_and_both_chains() {
        let s = dry_run(&["--cleanup", "--ipv6"]);
        let expected = "\
while iptables -t nat -C OUTPUT -p tcp -j FAULTLINE_OUTPUT 2>/dev/null; do iptables -t nat -D OUTPUT -p tcp -j FAULTLINE_OUTPUT; done
iptables -t nat -F FAULTLINE_OUTPUT 2>/dev/null || true
iptables -t nat -X FAULTLINE_OUTPUT 2>/dev/null || true
while iptables -t nat -C PREROUTING -p tcp -j FAULTLINE_INBOUND 2>/dev/null; do iptables -t nat -D PREROUTING -p tcp -j FAULTLINE_INBOUND; done
iptables -t nat -F FAULTLINE_INBOUND 2>/dev/null || true
iptables -t nat -X FAULTLINE_INBOUND 2>/dev/null || true
";
        assert_eq!(
            s,
            format!("{expected}{}", expected.replace("iptables", "ip6tables"))
        );
    }

    #[test]
    fn bad_options_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--uid"),
            (
                &["--mark", "1", "--inbound-ports", "*,80"],
                "--inbound-ports",
            ),
            (
                &["--mark", "1", "--inbound-ports", "http"],
                "--inbound-ports",
            ),
            (
                &["--mark", "1", "--exclude-outbound-cidrs", "10.0.0.0/40"],
                "--exclude-outbound-cidrs",
            ),
            (&["--mark", "1", "--outbound-port", "0"], "--outbound-port"),
        ];
        for (flags, flag) in cases {
            let e = options(flags).expect_err(&format!("{flags:?} is refused"));
            assert_eq!(e.setting, *flag, "{flags:?}: {e}");
        }
        // No exemption is needed to remove rules or when only inbound is captured.
        assert!(options(&["--cleanup"]).is_ok());
        assert!(options(&["--no-outbound"]).is_ok());
    }
}
