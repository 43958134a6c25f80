//! Every map of the balancer, one comment each: key → value, who writes it, capacity
//! (docs/datapath.md "Maps"). The static's name is the map name in the object and under the
//! pin directory; the `const` checks below tie each one to its `lb_common::consts::MAP_*`,
//! which lb-ctl opens by.

use crate::pkt::same;
use aya_ebpf::bindings::BPF_F_MMAPABLE;
use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, PerCpuArray},
};
use lb_common::{
    FlowKey, FlowKey4, FlowValue, LocalityValue, NatReverse, PersistKey, PersistValue, Real,
    Service, ServiceKey, Traffic, TrashRecord, VipKey,
    clock::Clock,
    conn::{ConnEvents, ConnExpiry, Settings},
    consts::{
        DEFAULT_CACHE_CPUS, DEFAULT_MAX_FLOWS, FILTER_WORDS, MAP_FLOW_CACHE, MAP_CLOCK, MAP_COUNTERS, MAP_FLOWS4, MAP_FLOWS6, MAP_LBLC,
        MAP_NAT_FILTER, MAP_NAT_REV4, MAP_NAT_REV6, MAP_PERSIST, MAP_REAL_CONNS, MAP_REAL_EXPIRED,
        MAP_REAL_RATE, MAP_REAL_STATS, MAP_REAL_TRASH, MAP_TABLE_FILL, MAP_REALS, MAP_SCHED_CURSOR, MAP_SCHED_TABLE, MAP_SERVICES, MAP_SETTINGS,
        MAP_SVC_RATE, MAP_SVC_STATS, MAP_TX_PORTS, MAP_VIP_FILTER, MAP_VIPS, MAX_PERSIST, MAX_REALS,
        MAX_SERVICES, MAX_TX_PORTS, SCHED_TABLE_SLOTS,
    },
    counters::CounterBlock,
    rate::RateState,
    tables::TABLES,
    flow_cache::{CachedFlow, DEFAULT_CACHE_BITS},
};

/// `ServiceKey` (VIP, port or 0, proto, family) → `Service`. lb-ctl; MAX_SERVICES.
#[map]
pub static SERVICES: HashMap<ServiceKey, Service> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// `VipKey` → number of services on that address. lb-ctl; MAX_SERVICES. Read only on rare
/// paths (fragments, extension headers, other protocols) to tell VIP traffic from others'.
#[map]
pub static VIPS: HashMap<VipKey, u32> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// real id → `Real`. lb-ctl; MAX_REALS. An array, so the JIT inlines the lookup;
/// mmapable, so lb-ctl reads all of it as memory at the start of every command.
#[map]
pub static REALS: Array<Real> = Array::with_max_entries(MAX_REALS, BPF_F_MMAPABLE);

/// real id → `TrashRecord` of a deleted real (IPVS's dest trash: `-a` of the same real
/// gets its old id back). Written and read by lb-ctl only; the data path never reads it.
/// MAX_REALS; mmapable, so lb-ctl reads it with REALS as memory. Declared here so the
/// loader creates and pins it with the others (`#[map]` puts it in the object whether or
/// not the program references it).
#[map]
pub static REAL_TRASH: Array<TrashRecord> = Array::with_max_entries(MAX_REALS, BPF_F_MMAPABLE);

/// `Table` index → entries the sweeper counted at its last pass (lb-common `tables`).
/// lb-ctl only, like REAL_TRASH: the data path never touches it.
#[map]
pub static TABLE_FILL: Array<u64> = Array::with_max_entries(TABLES, 0);

/// slot → real id (`NO_REAL` = none): every service's scheduler table, each a region
/// (table_base, table_len). lb-ctl, through mmap (a 65,537-slot table is one memory
/// copy); SCHED_TABLE_SLOTS.
#[map]
pub static SCHED_TABLE: Array<u32> = Array::with_max_entries(SCHED_TABLE_SLOTS, BPF_F_MMAPABLE);

/// IPv4 flows: `FlowKey4` (client → VIP) → `FlowValue`. The data path inserts; lb-ctl's
/// sweep (and the data path's own expiries) remove. A plain preallocated hash, not an LRU:
/// nothing is ever evicted behind the connection counters' back, and a full table refuses
/// the insert, which is counted (docs/design.md "Flow tables"). DEFAULT_MAX_FLOWS, resized
/// at load (`--max-flows`). Through `flows.rs`, which picks the family's table.
#[map]
pub static FLOWS4: HashMap<FlowKey4, FlowValue> = HashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

/// IPv6 flows: `FlowKey` (client → VIP) → `FlowValue`. As FLOWS4.
#[map]
pub static FLOWS6: HashMap<FlowKey, FlowValue> = HashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

/// IPv4 NAT replies: `FlowKey4` (real → client) → `NatReverse`. The data path inserts on a
/// new NAT flow; removed with its flow. A plain hash, as FLOWS4. Sized like FLOWS4 at load.
#[map]
pub static NAT_REV4: HashMap<FlowKey4, NatReverse> =
    HashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

/// IPv6 NAT replies: `FlowKey` (real → client) → `NatReverse`. As NAT_REV4.
#[map]
pub static NAT_REV6: HashMap<FlowKey, NatReverse> =
    HashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

/// (CPU << FLOW_CACHE_BITS | slot) → `CachedFlow`: each CPU's part of the flow cache
/// (`lb_common::flow_cache`, `cache.rs`). The data path only, each CPU in its own part; sized
/// for the possible CPUs at load. A plain array indexed by CPU rather than a per-CPU one:
/// one memory read per probe, where a per-CPU array adds a read of the value's pointer.
/// Mmapable: its values start on a page, so each 64-byte slot is one cache line (and the
/// tests empty it with one memset).
#[map]
pub static FLOW_CACHE: Array<CachedFlow> =
    Array::with_max_entries(DEFAULT_CACHE_CPUS << DEFAULT_CACHE_BITS, BPF_F_MMAPABLE);

/// service id → per-CPU `Traffic`. The data path; MAX_SERVICES.
#[map]
pub static SVC_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

/// real id → per-CPU `Traffic`. The data path; MAX_REALS.
#[map]
pub static REAL_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_REALS, 0);

/// service id → `RateState`: the rate estimator (`-L --rate`). lb-ctl's resident process
/// only, like TABLE_FILL: the data path never touches it. MAX_SERVICES.
#[map]
pub static SVC_RATE: Array<RateState> = Array::with_max_entries(MAX_SERVICES, 0);

/// real id → `RateState`. As SVC_RATE; MAX_REALS.
#[map]
pub static REAL_RATE: Array<RateState> = Array::with_max_entries(MAX_REALS, 0);

/// One entry: this CPU's `CounterBlock` (packets by `Counter` slot). The data path.
#[map]
pub static COUNTERS: PerCpuArray<CounterBlock> = PerCpuArray::with_max_entries(1, 0);

/// ifindex → ifindex, the XDP_REDIRECT targets. lb-ctl (one per attached interface);
/// MAX_TX_PORTS.
#[map]
pub static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_TX_PORTS, 0);

/// word → u64 bits: `filter_slot(VIP)` bits. lb-ctl; FILTER_WORDS. Checked before any hash
/// lookup so non-VIP traffic costs no helper call.
#[map]
pub static VIP_FILTER: Array<u64> = Array::with_max_entries(FILTER_WORDS, 0);

/// word → u64 bits: `filter_slot(NAT real address)` bits. lb-ctl; FILTER_WORDS. Gates the
/// NAT_REV lookup the same way.
#[map]
pub static NAT_FILTER: Array<u64> = Array::with_max_entries(FILTER_WORDS, 0);

/// service id → `LocalityValue`: the lblc / lblcr cache (IPVS keys it on the
/// destination address; a service has one, its VIP). The data path; MAX_SERVICES.
#[map]
pub static LBLC: Array<LocalityValue> = Array::with_max_entries(MAX_SERVICES, 0);

/// `PersistKey` (masked client, persistence group) → `PersistValue`: persistence
/// templates. The data path inserts and refreshes; lb-ctl's sweep expires. A plain hash,
/// as FLOWS4 (a template evicted unseen would leave PersistConn counted); MAX_PERSIST.
#[map]
pub static PERSIST: HashMap<PersistKey, PersistValue> = HashMap::with_max_entries(MAX_PERSIST, 0);

/// real id → `ConnEvents`. The data path only, with atomic adds (shared, not per-CPU, so
/// load-driven schedulers read live values); MAX_REALS.
#[map]
pub static REAL_CONNS: Array<ConnEvents> = Array::with_max_entries(MAX_REALS, 0);

/// real id → `ConnExpiry`. lb-ctl's sweep only; the data path reads it for live counts.
#[map]
pub static REAL_EXPIRED: Array<ConnExpiry> = Array::with_max_entries(MAX_REALS, 0);

/// [0] → `Clock`: how jiffies become the seconds flows and templates are stamped with
/// (`lb_common::clock`), written by `lb-ctl load`; or a time fixed by a test.
#[map]
pub static CLOCK: Array<Clock> = Array::with_max_entries(1, 0);

/// service id → u64 rr/wrr scheduler state (IPVS's list position of the last pick, wrr's
/// current weight or rr's last pick's real id, and the `Service::list_gen()` they belong to;
/// bit layout in `sched/walk.rs`). The data path (lb-ctl zeroes entries); MAX_SERVICES.
#[map]
pub static SCHED_CURSOR: Array<u64> = Array::with_max_entries(MAX_SERVICES, 0);

/// [0] → `Settings` (timeouts, expire_nodest_conn, expire_quiescent_template). lb-ctl.
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

// `#[map]` names each map after its static; these fail the build if a const is renamed.
const _: () = assert!(same(MAP_SERVICES, "SERVICES"));
const _: () = assert!(same(MAP_VIPS, "VIPS"));
const _: () = assert!(same(MAP_REALS, "REALS"));
const _: () = assert!(same(MAP_REAL_TRASH, "REAL_TRASH"));
const _: () = assert!(same(MAP_TABLE_FILL, "TABLE_FILL"));
const _: () = assert!(same(MAP_SCHED_TABLE, "SCHED_TABLE"));
const _: () = assert!(same(MAP_FLOWS4, "FLOWS4"));
const _: () = assert!(same(MAP_FLOWS6, "FLOWS6"));
const _: () = assert!(same(MAP_NAT_REV4, "NAT_REV4"));
const _: () = assert!(same(MAP_NAT_REV6, "NAT_REV6"));
const _: () = assert!(same(MAP_SVC_STATS, "SVC_STATS"));
const _: () = assert!(same(MAP_REAL_STATS, "REAL_STATS"));
const _: () = assert!(same(MAP_SVC_RATE, "SVC_RATE"));
const _: () = assert!(same(MAP_REAL_RATE, "REAL_RATE"));
const _: () = assert!(same(MAP_COUNTERS, "COUNTERS"));
const _: () = assert!(same(MAP_TX_PORTS, "TX_PORTS"));
const _: () = assert!(same(MAP_VIP_FILTER, "VIP_FILTER"));
const _: () = assert!(same(MAP_NAT_FILTER, "NAT_FILTER"));
const _: () = assert!(same(MAP_PERSIST, "PERSIST"));
const _: () = assert!(same(MAP_REAL_CONNS, "REAL_CONNS"));
const _: () = assert!(same(MAP_REAL_EXPIRED, "REAL_EXPIRED"));
const _: () = assert!(same(MAP_CLOCK, "CLOCK"));
const _: () = assert!(same(MAP_SCHED_CURSOR, "SCHED_CURSOR"));
const _: () = assert!(same(MAP_SETTINGS, "SETTINGS"));
const _: () = assert!(same(MAP_LBLC, "LBLC"));
const _: () = assert!(same(MAP_FLOW_CACHE, "FLOW_CACHE"));
