//! Test support shared by the workspace's crates.
//!
//! [`wait`] is the one way tests wait for something to happen: poll a condition until it holds
//! or a deadline passes, and on timeout say what was awaited and what was last seen.

pub mod wait;
