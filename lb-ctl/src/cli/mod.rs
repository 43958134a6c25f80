//! ipvsadm's face: its command line ([`ipvsadm`]), its output ([`show`]), the JSON
//! rendering of the same values ([`json`], docs/json.md) and running one command against
//! the pinned maps ([`ctl`]).

pub mod ctl;
pub mod ipvsadm;
pub mod json;
pub mod show;
