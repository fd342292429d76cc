//! down: the route is down. New connections are refused and open ones are cut.
//!
//! With toxicity 1 the listening socket is closed, so clients get ECONNREFUSED exactly as from a
//! dead service (Toxiproxy's `enabled: false` does the same). With a lower toxicity the listener
//! stays open and each affected connection is reset as soon as it is accepted.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Down;
