//! Types and pure logic that the XDP programs (`lb-ebpf`) and the controller (`lb-ctl`)
//! must agree on, defined once.
//!
//! Every map key and value is `#[repr(C)]`, derives bytemuck `Pod`, spells its padding out
//! as named fields and carries a size assertion, so a layout drift fails the build on both
//! sides at once. Nothing here does I/O or reads a clock: callers pass time in.
#![no_std]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod addr;
pub mod clock;
pub mod conn;
pub mod consts;
pub mod counters;
pub mod csum;
pub mod filter;
pub mod flow;
pub mod flow_cache;
pub mod hash;
#[cfg(feature = "std")]
pub mod maglev;
pub mod ops;
pub mod rate;
pub mod real;
pub mod sched;
pub mod service;
pub mod tables;

pub use addr::{Be16, RawAddr};
pub use counters::{Counter, CounterBlock, Drop, Pass, Traffic};
pub use flow::{
    FlowFlags, FlowKey, FlowKey4, FlowValue, LocalityValue, NatReverse, PersistKey, PersistValue,
    StateWord,
};
pub use real::{ForwardMode, Real, RealFlags, TrashRecord};
pub use service::{SchedKind, Service, ServiceKey, VipFlags, VipKey};

/// `aya::Pod` for every map key and value, so lb-ctl can use them with aya's typed maps.
#[cfg(feature = "user")]
mod pod {
    use super::*;
    macro_rules! aya_pod {
        ($($t:ty),*) => { $( unsafe impl aya::Pod for $t {} )* };
    }
    aya_pod!(
        Be16,
        clock::Clock,
        FlowKey,
        FlowKey4,
        FlowValue,
        NatReverse,
        Real,
        TrashRecord,
        Service,
        ServiceKey,
        Traffic,
        CounterBlock,
        VipFlags,
        RealFlags,
        VipKey,
        PersistKey,
        PersistValue,
        conn::ConnEvents,
        conn::ConnExpiry,
        conn::Timeouts,
        conn::Settings,
        rate::RateState
    );
}
