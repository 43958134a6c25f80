//! `lb_ops`: the requests lb-ctl makes of the kernel through BPF_PROG_TEST_RUN, for what
//! userspace cannot do with map system calls alone (read the data path's clock, and
//! remove flows by the claim every remover follows, [`op::REAP`]). The test-run buffer is
//! the request: an [`OpHeader`], then the operation's payload, which the program
//! overwrites with its answer.

use bytemuck::{Pod, Zeroable};

/// Operation codes ([`OpHeader::op`]).
pub mod op {
    /// Read the clock: the payload becomes a [`super::ClockReply`].
    pub const CLOCK: u32 = 1;
    /// Remove flows as the sweep decided (a [`super::ReapHeader`], then that many
    /// [`super::ReapEntry`]): each entry's `outcome` says what became of its flow.
    pub const REAP: u32 = 2;
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

/// Most bytes of a test-run buffer: an XDP test run takes one page less the headroom
/// (`XDP_PACKET_HEADROOM`, 256) and the tailroom of `skb_shared_info` (320 on x86-64):
/// 4096 − 576 (net/bpf/test_run.c `bpf_prog_test_run_xdp`, no frags).
pub const OP_BUFFER_MAX: usize = 3520;

/// The payload of [`op::REAP`]: this header, then `count` [`ReapEntry`]s.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ReapHeader {
    /// Entries that follow (at most [`REAP_BATCH`]).
    pub count: u32,
    /// Padding, zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ReapHeader>() == 8);

/// One flow the sweep wants removed, and (written by `lb_ops`) what became of it.
///
/// The rule every remover of a flow follows (docs/design.md, "Connections and time"): a
/// flow is claimed by setting [`crate::FlowFlags::DEAD`] with a compare-and-swap of its
/// state word, after which no CPU moves it or its real's counters; the claimed entry is
/// then deleted, and the removal is booked (the data path's unbind, or REAL_EXPIRED) by
/// whoever's delete succeeds, by the flags frozen in the word.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ReapEntry {
    /// The flow (its family picks FLOWS4 or FLOWS6).
    pub key: crate::FlowKey,
    /// The state word the sweep judged it by ([`crate::StateWord`]): an unclaimed flow is
    /// claimed only if its word is still this one.
    pub seen_word: u32,
    /// The `last_seen_s` the sweep judged it by: likewise.
    pub seen_last_s: u32,
    /// Written by `lb_ops`: one of [`reap`].
    pub outcome: u32,
    /// Written by `lb_ops` with [`reap::REMOVED`]: the flags the flow was removed with
    /// (DEAD cleared), which the sweep books it by.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<ReapEntry>() == 56);

/// Entries of one [`op::REAP`] run: as many as fit [`OP_BUFFER_MAX`] after the headers.
pub const REAP_BATCH: usize = 62;
const _: () = assert!(
    core::mem::size_of::<OpHeader>()
        + core::mem::size_of::<ReapHeader>()
        + REAP_BATCH * core::mem::size_of::<ReapEntry>()
        <= OP_BUFFER_MAX
);

/// [`ReapEntry::outcome`] values.
pub mod reap {
    /// Not run (the program stopped before this entry: a short buffer).
    pub const PENDING: u32 = 0;
    /// Claimed (or found claimed) and deleted by this run: the sweep books it by
    /// `ReapEntry::flags`.
    pub const REMOVED: u32 = 1;
    /// Not claimed: its state word or its stamp is no longer what the sweep saw (a packet
    /// moved or refreshed it). Left in the table, live; the next pass judges it again.
    pub const CHANGED: u32 = 2;
    /// Not in the table (any more): whoever deleted it booked it.
    pub const ABSENT: u32 = 3;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_reap_batch_fits_one_test_run() {
        let used =
            size_of::<OpHeader>() + size_of::<ReapHeader>() + REAP_BATCH * size_of::<ReapEntry>();
        assert!(used <= OP_BUFFER_MAX, "{used}");
        // One more entry would not fit.
        assert!(used + size_of::<ReapEntry>() > OP_BUFFER_MAX);
        // Entries stay 8-byte aligned in the buffer (the program reads them in place).
        assert_eq!((size_of::<OpHeader>() + size_of::<ReapHeader>()) % 8, 0);
        assert_eq!(size_of::<ReapEntry>() % 8, 0);
    }
}
