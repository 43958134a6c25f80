//! Shared test machinery for lb: packet builders and an independent checker, the BPF
//! test-run harness, and network-namespace labs.
pub mod bpf;
pub mod case;
pub mod check;
pub mod lab;
pub mod packet;
pub mod provision;
