//! `lb_ops`: the requests lb-ctl makes of the kernel through BPF_PROG_TEST_RUN, for what
//! userspace cannot do with map system calls alone (read the data path's clock, and later
//! remove flows atomically). The test-run buffer is the request: an [`OpHeader`], then the
//! operation's payload, which the program overwrites with its answer.

use bytemuck::{Pod, Zeroable};

/// Operation codes ([`OpHeader::op`]).
pub mod op {
    /// Read the clock: the payload becomes a [`super::ClockReply`].
    pub const CLOCK: u32 = 1;
}

/// [`OpHeader::status`] values.
pub mod status {
    /// Not yet run (what lb-ctl sends).
    pub const PENDING: u32 = 0;
    /// Done; the payload holds the answer.
    pub const OK: u32 = 1;
    /// The program does not know the operation (an older lb_ops).
    pub const UNKNOWN_OP: u32 = 2;
    /// The buffer is too short for the operation.
    pub const SHORT: u32 = 3;
}

/// The first bytes of every request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct OpHeader {
    /// One of [`op`].
    pub op: u32,
    /// One of [`status`], written by the program.
    pub status: u32,
}
const _: () = assert!(core::mem::size_of::<OpHeader>() == 8);

/// The answer to [`op::CLOCK`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ClockReply {
    /// The kernel's jiffies.
    pub jiffies: u64,
    /// The data path's clock at those jiffies (`crate::clock::seconds`).
    pub now_s: u32,
    /// Padding, zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ClockReply>() == 16);

/// Bytes of a test-run buffer: the kernel wants at least an Ethernet header's worth.
pub const OP_BUFFER_MIN: usize = 64;
