//! Shared test machinery for lb: packet builders and an independent checker, the BPF
//! test-run harness, network-namespace labs, and the one namespace guard ([`netns`]) that
//! lb-ctl's tests and `cargo xtask bench`/`demo` use too.
pub mod bpf;
pub mod case;
pub mod check;
pub mod lab;
pub mod netns;
pub mod packet;
pub mod provision;
