//! Perch: a persistent chat server, and the reconciler that keeps its configuration in Git.
//!
//! Where to start:
//! - [`domain`]: categories, rooms, add-ins, groups, compliance, principals; no I/O.
//! - [`service`]: the only path to the store; enforces every rule.
//! - [`store`]: SQLite or PostgreSQL behind one SQL text.
//! - [`server`]: the HTTP JSON API (`perch serve`).
//! - [`cli`]: the `perch` command line.
//!
//! `ARCHITECTURE.md` at the top of the repository has the code map and its invariants.

pub mod api;
pub mod atomic_file;
pub mod cli;
pub mod clock;
pub mod domain;
pub mod live;
pub mod manifest;
pub mod plan;
pub mod server;
pub mod service;
pub mod store;
