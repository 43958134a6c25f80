//! ipvsadm's face: its command line ([`ipvsadm`]), its output ([`show`]) and running one
//! command against the pinned maps ([`ctl`]).

pub mod ctl;
pub mod ipvsadm;
pub mod show;
