//! ipvsadm's face: its command line ([`ipvsadm`]), its output ([`show`], [`save`] for
//! `-S`), `-R` ([`restore`]), host and service names ([`names`]), ipvsadm's error texts and exit
//! statuses ([`errors`]), the JSON
//! rendering of the same values ([`json`], docs/json.md) and running one command against
//! the pinned maps ([`ctl`]).

pub mod ctl;
pub mod errors;
pub mod ipvsadm;
pub mod json;
pub mod names;
pub mod restore;
pub mod save;
pub mod show;
