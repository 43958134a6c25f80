//! Neighbour following: keeping each real's next-hop MAC current after `-a` / `-e` wrote it,
//! so a real added while it was down (stored `NO_NEIGHBOUR`) starts taking traffic once its
//! next hop answers, and one whose MAC changes keeps taking it. The resident process runs the
//! follower ([`follow`]) beside its expiry loop (`crate::sweeper::run`). The decisions
//! (which reals a neighbour entry touches, what to write) are pure, in [`plan`]; the
//! rtnetlink I/O is [`crate::rtnl`]'s.

pub mod follow;
pub mod plan;
