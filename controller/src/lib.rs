//! faultline-controller: the central control plane.
//!
//! It will hold experiments in its SQLite store, choose the agents they target, push each agent
//! its full desired fault set under a lease, and abort experiments when an SLO guard trips.
//! Nothing is built here yet: the control plane is the subject of its own issue, and this crate
//! exists so the workspace has the shape the project is meant to have.
