//! The state tables whose fill lb reports: the sweeper counts their entries each pass
//! into `TABLE_FILL` (array, by [`Table`] index), which `lb-ctl counters` and the listings'
//! warnings read beside each table's capacity. The tables are plain hashes: a full one
//! refuses inserts (counted by the data path) instead of evicting.

use crate::consts::{MAP_FLOWS4, MAP_FLOWS6, MAP_NAT_REV4, MAP_NAT_REV6, MAP_PERSIST};

/// One reported table (its `TABLE_FILL` index).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// IPv4 flows.
    Flows4 = 0,
    /// IPv6 flows.
    Flows6 = 1,
    /// IPv4 NAT replies.
    NatRev4 = 2,
    /// IPv6 NAT replies.
    NatRev6 = 3,
    /// Persistence templates.
    Persist = 4,
}

/// Entries of `TABLE_FILL`.
pub const TABLES: u32 = 5;

impl Table {
    /// Every table, in `TABLE_FILL` order.
    pub const ALL: [Table; TABLES as usize] = [
        Table::Flows4,
        Table::Flows6,
        Table::NatRev4,
        Table::NatRev6,
        Table::Persist,
    ];
    /// Stable name for output and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Flows4 => "flows4",
            Table::Flows6 => "flows6",
            Table::NatRev4 => "nat_rev4",
            Table::NatRev6 => "nat_rev6",
            Table::Persist => "persist",
        }
    }
    /// Name of its fill in `lb-ctl counters` (entries at the last sweep pass).
    pub const fn entries_name(self) -> &'static str {
        match self {
            Table::Flows4 => "table_flows4_entries",
            Table::Flows6 => "table_flows6_entries",
            Table::NatRev4 => "table_nat_rev4_entries",
            Table::NatRev6 => "table_nat_rev6_entries",
            Table::Persist => "table_persist_entries",
        }
    }
    /// Name of its capacity in `lb-ctl counters`.
    pub const fn capacity_name(self) -> &'static str {
        match self {
            Table::Flows4 => "table_flows4_capacity",
            Table::Flows6 => "table_flows6_capacity",
            Table::NatRev4 => "table_nat_rev4_capacity",
            Table::NatRev6 => "table_nat_rev6_capacity",
            Table::Persist => "table_persist_capacity",
        }
    }
    /// The map it is.
    pub const fn map(self) -> &'static str {
        match self {
            Table::Flows4 => MAP_FLOWS4,
            Table::Flows6 => MAP_FLOWS6,
            Table::NatRev4 => MAP_NAT_REV4,
            Table::NatRev6 => MAP_NAT_REV6,
            Table::Persist => MAP_PERSIST,
        }
    }
}
