//! The flow tables, one pair per family (docs/datapath.md "Maps"): FLOWS4 / NAT_REV4 keyed
//! by the 16-byte `FlowKey4`, FLOWS6 / NAT_REV6 by the 40-byte `FlowKey`. The kernel hashes
//! and compares the whole key on every lookup and insert, so an IPv4 flow does not carry
//! 24 bytes of zeroes through them. The rest of the data path sees one `FlowKey`; these
//! functions pick the table by its family.

use lb_common::{FlowKey, FlowValue, NatReverse};

use crate::maps::{FLOWS4, FLOWS6, NAT_REV4, NAT_REV6};

/// `BPF_NOEXIST`: insert only if no other CPU recorded the key first.
pub const BPF_NOEXIST: u64 = 1;
/// What a map update returns when `BPF_NOEXIST` finds the key.
pub const EEXIST: i32 = -17;

/// What [`flow_insert_new`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Recorded.
    Done,
    /// The flow is already there: nothing written.
    Exists,
    /// Not recorded (no free element: the table is full and nothing could be evicted).
    Failed,
}

/// The flow's entry, for reading and updating in place.
#[inline(always)]
pub fn flow_ptr(key: &FlowKey) -> Option<*mut FlowValue> {
    if key.is_v4() {
        FLOWS4.get_ptr_mut(key.v4())
    } else {
        FLOWS6.get_ptr_mut(key)
    }
}

/// Records a new flow unless one exists (`BPF_NOEXIST`).
#[inline(always)]
pub fn flow_insert_new(key: &FlowKey, v: &FlowValue) -> Insert {
    let r = if key.is_v4() {
        FLOWS4.insert(key.v4(), v, BPF_NOEXIST)
    } else {
        FLOWS6.insert(key, v, BPF_NOEXIST)
    };
    match r {
        Ok(()) => Insert::Done,
        Err(EEXIST) => Insert::Exists,
        Err(_) => Insert::Failed,
    }
}

/// Removes the flow; false when it was not there (another CPU removed it first).
#[inline(always)]
pub fn flow_remove(key: &FlowKey) -> bool {
    if key.is_v4() {
        FLOWS4.remove(key.v4()).is_ok()
    } else {
        FLOWS6.remove(key).is_ok()
    }
}

/// The reverse entry of a NAT reply (real → client), copied out: an LRU element may be
/// reused under us once we call another helper.
#[inline(always)]
pub fn nat_reverse(key: &FlowKey) -> Option<NatReverse> {
    if key.is_v4() {
        unsafe { NAT_REV4.get(key.v4()) }.copied()
    } else {
        unsafe { NAT_REV6.get(key) }.copied()
    }
}

/// Records (or replaces) a NAT reply's reverse entry; false when the insert failed.
#[inline(always)]
pub fn nat_reverse_insert(key: &FlowKey, rev: &NatReverse) -> bool {
    if key.is_v4() {
        NAT_REV4.insert(key.v4(), rev, 0).is_ok()
    } else {
        NAT_REV6.insert(key, rev, 0).is_ok()
    }
}

/// Removes a NAT reply's reverse entry if it is still `owner`'s (`FlowKey::owns_nat_reverse`:
/// same VIP and port), as lb-ctl's sweep does for the flows it expires.
#[inline(always)]
pub fn nat_reverse_forget(key: &FlowKey, owner: &FlowKey) {
    if matches!(nat_reverse(key), Some(rev) if owner.owns_nat_reverse(&rev)) {
        if key.is_v4() {
            let _ = NAT_REV4.remove(key.v4());
        } else {
            let _ = NAT_REV6.remove(key);
        }
    }
}
