//! Transparent capture: connections iptables `REDIRECT`ed to the agent are proxied to their
//! original destination, through the captured route that matches it.
//!
//! - [`original_dst`]: where a redirected connection was going (`SO_ORIGINAL_DST`,
//!   `IP6T_SO_ORIGINAL_DST`).
//! - [`detect`]: HTTP/1, HTTP/2 or TCP, from the client's first bytes (peeked, not consumed).
//! - [`listener`]: the capture listeners (`--capture-outbound`, `--capture-inbound`): per
//!   connection, the first captured route whose match fits, else an untouched passthrough.
//! - [`iptables`]: `faultline-agent init-iptables`: the rules that redirect a pod's traffic,
//!   and their removal.
//!
//! Invariant: the agent never captures its own upstream connections. Every socket it opens
//! upstream carries `--mark` when given, and the rules exempt that mark or the agent's UID;
//! `init-iptables` refuses to capture outbound traffic without one of them.

pub mod detect;
pub mod iptables;
pub mod listener;
pub mod original_dst;
