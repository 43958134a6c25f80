//! Scheduler model-equivalence tests: filled in with the IPVS scheduler set.
fn main() {}
