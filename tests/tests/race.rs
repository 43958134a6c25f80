//! Two-CPU race hammers (issue 13): BPF_PROG_TEST_RUN of the real `lb_xdp` (and `lb_ops`)
//! from two threads pinned to CPU 0 and CPU 1, working on the same NAT flows at the same
//! moment (a per-packet spin barrier lines the two syscalls up), then checking that every
//! real's ActiveConn / InActConn is what the flows left in the table say. Before the state
//! word was changed by compare-and-swap, two CPUs moving one flow at once (a client FIN and
//! the real's FIN or RST, or two ACKs of a SYN_RECV flow) both counted the move and a
//! real's count wrapped to 2^64 − 1; and a sweep that removed a flow while a CPU moved it
//! counted it twice (once expired, once moved).
//!
//! Needs root and two CPUs; otherwise the trial is reported ignored with the reason.
//! `cargo test -p lb-tests --test race`. `LB_BPF_OBJECT=<file>` tests another build.

use anyhow::{Context, Result, bail};
use lb_common::addr::convert::to_raw;
use lb_common::conn::{ConnExpiry, conn_counts};
use lb_common::ops::{ReapEntry, op, reap};
use lb_common::real::ref_id;
use lb_common::{Be16, Counter, FlowFlags, ForwardMode, Real, RealFlags, VipFlags};
use lb_ctl::loader::{ObjectFile, object_path};
use lb_ctl::maps::ops::{reap_reply, reap_request};
use lb_ctl::sweep::reap_entry;
use lb_tests::bpf::{self, Bpf, IF_LO};
use lb_tests::packet::{L4, Pkt, addr};
use lb_tests::provision::{Provision, Svc, Table, flow_key};
use libtest_mimic::{Completion, Trial};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENT: &str = "198.18.0.10";
const VIP: &str = "198.18.1.1";
const VPORT: u16 = 80;
const RPORT: u16 = 8080;
/// The NAT reals (ids 1..), spread over by the service's port-hashing Maglev table.
const REALS: [&str; 4] = ["198.19.0.2", "198.19.0.3", "198.19.0.4", "198.19.0.5"];
/// Flows per round (client ports `FIRST_PORT..`): well below the harness's 1,024-entry
/// flow and NAT_REV tables.
const FLOWS: u16 = 256;
const FIRST_PORT: u16 = 20000;
/// Each hammer stops after this many rounds or this long, whichever comes first. Without
/// the compare-and-swap (this code with the swap made a plain store, or with REAP's claim
/// skipped; and 2766b17's object, run before the harness's CLOCK changed) each failed in
/// its first round, 5 runs of 5.
const MAX_ROUNDS: u32 = 400;
const MAX_TIME: Duration = Duration::from_secs(8);

const FIN: u8 = 1;
const SYN: u8 = 2;
const RST: u8 = 4;
const ACK: u8 = 16;
const TCP: u8 = 6;

fn main() {
    let mut args = libtest_mimic::Arguments::from_args();
    // One thread: the trials share the loaded program, in the namespace of the thread
    // that entered it (libtest-mimic runs them on the main thread).
    args.test_threads = Some(1);
    let trial = |name: &'static str, f: fn(&mut Bpf) -> Result<()>| {
        Trial::ignorable_test(name, move || {
            if !lb_tests::netns::is_root() {
                return Ok(Completion::ignored_with("needs root (BPF_PROG_TEST_RUN)"));
            }
            if !can_pin(1) {
                return Ok(Completion::ignored_with("needs CPUs 0 and 1"));
            }
            match with_harness(f) {
                Ok(()) => Ok(Completion::Completed),
                Err(e) => Err(format!("{e:#}").into()),
            }
        })
    };
    let trials = vec![
        trial("nat_two_cpus_move_each_connection_once", hammer),
        trial("sweep_reap_against_a_cpu_moving_the_flow", hammer_reap),
        trial("persist_two_cpus_make_one_template", hammer_persist),
        trial(
            "persist_two_cpus_replace_a_stale_template_once",
            hammer_persist_stale,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

thread_local! {
    /// The loaded balancer, created on first use in a namespace of this thread.
    static HARNESS: std::cell::RefCell<Option<Bpf>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` on the loaded balancer (loaded on first use), its maps cleared and provisioned.
fn with_harness(f: fn(&mut Bpf) -> Result<()>) -> Result<()> {
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_none() {
            let path = object_path(ObjectFile::BALANCER, None)?;
            bpf::enter_netns()?;
            let b = Bpf::load(&path)?;
            eprintln!("race hammers: testing {}", path.display());
            *h = Some(b);
        }
        let bpf = h.as_mut().expect("loaded above");
        bpf.clear()?;
        provision().apply(bpf)?;
        f(bpf)
    })
}

/// Pins the calling thread to `cpu`; false when it cannot run there.
fn pin(cpu: usize) -> bool {
    // SAFETY: plain libc calls on a zeroed cpu_set_t owned here.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Whether a thread can be pinned to `cpu` (tried on a throwaway thread).
fn can_pin(cpu: usize) -> bool {
    std::thread::spawn(move || pin(cpu)).join().unwrap_or(false)
}

/// `p` with exactly these TCP flags.
fn with_flags(mut p: Pkt, f: u8) -> Pkt {
    if let L4::Tcp(t) = &mut p.l4 {
        t.fin = f & FIN != 0;
        t.syn = f & SYN != 0;
        t.rst = f & RST != 0;
        t.psh = false;
        t.ack = f & ACK != 0;
        if !t.ack {
            t.acknowledgment_number = 0;
        }
    }
    p
}

fn real(a: &str) -> Real {
    let (raw, family) = to_raw(addr(a));
    Real {
        addr: raw,
        port: Be16::from_host(RPORT),
        mode: ForwardMode::Nat as u8,
        family,
        flags: RealFlags(RealFlags::ACTIVE),
        svc_id: 1,
        weight: 1,
        ifindex: IF_LO,
        dst_mac: [2, 0, 0, 0, 1, 2],
        src_mac: [2, 0, 0, 0, 0, 4],
        ..Default::default()
    }
}

fn provision() -> Provision {
    Provision {
        services: vec![Svc {
            id: 1,
            vip: addr(VIP),
            port: VPORT,
            proto: TCP,
            flags: VipFlags::HASH_PORTS,
            table: Table::Maglev(13),
        }],
        reals: REALS
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u32 + 1, real(a)))
            .collect(),
        ..Provision::default()
    }
}

/// The client's packet of flow `i` with flags `f`.
fn client(i: u16, f: u8) -> Vec<u8> {
    with_flags(Pkt::tcp(CLIENT, VIP, FIRST_PORT + i, VPORT), f).build()
}

/// The real's reply of flow `i` (from `real`, the flow's) with flags `f`.
fn reply(real: &str, i: u16, f: u8) -> Vec<u8> {
    with_flags(Pkt::tcp(real, CLIENT, RPORT, FIRST_PORT + i), f).build()
}

/// Both threads send their frames, frame `i` of each at the same moment: before each
/// packet both arrive at a spin barrier (`turn` counts arrivals), so the two test runs of
/// one flow start within the same microsecond on the two CPUs.
fn at_once(bpf: &Bpf, frames: [Vec<Vec<u8>>; 2]) -> Result<()> {
    assert_eq!(frames[0].len(), frames[1].len());
    let turn = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        let hs: Vec<_> = frames
            .iter()
            .enumerate()
            .map(|(cpu, frames)| {
                let (turn, failed) = (&turn, &failed);
                s.spawn(move || -> Result<()> {
                    if !pin(cpu) {
                        bail!("cannot pin to CPU {cpu}");
                    }
                    for (i, f) in frames.iter().enumerate() {
                        turn.fetch_add(1, Ordering::AcqRel);
                        let want = 2 * (i as u64 + 1);
                        while turn.load(Ordering::Acquire) < want {
                            if failed.load(Ordering::Relaxed) {
                                bail!("the other thread failed");
                            }
                            std::hint::spin_loop();
                        }
                        if let Err(e) = bpf.run(f, IF_LO) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("hammer thread panicked"))
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

/// Every flow's real address (the reply's source), by flow index.
fn flow_reals(bpf: &mut Bpf) -> Result<Vec<&'static str>> {
    (0..FLOWS)
        .map(|i| {
            let k = flow_key(addr(CLIENT), addr(VIP), FIRST_PORT + i, VPORT, TCP);
            let v = bpf
                .flow(&k)?
                .with_context(|| format!("flow {i} not recorded"))?;
            REALS
                .get(ref_id(v.real_id) as usize - 1)
                .copied()
                .with_context(|| format!("flow {i} on real {}", v.real_id))
        })
        .collect()
}

/// Every real's (ActiveConn, InActConn) must be what the table's flows say by their
/// INACTIVE flags, with `expired` the sweep's bookings (REAL_EXPIRED as the sweep would
/// have added them).
fn check(bpf: &mut Bpf, round: u32, what: &str, expired: &BTreeMap<u32, ConnExpiry>) -> Result<()> {
    let mut want: BTreeMap<u32, (u64, u64)> =
        (1..=REALS.len() as u32).map(|r| (r, (0, 0))).collect();
    for i in 0..FLOWS {
        if let Some(v) = bpf.flow(&key(i))? {
            if v.flags & FlowFlags::DEAD != 0 {
                bail!("round {round}, {what}: flow {i} left DEAD in the table: {v:?}");
            }
            let e = want.entry(ref_id(v.real_id)).or_default();
            if v.flags & FlowFlags::INACTIVE != 0 {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
        }
    }
    for (r, w) in want {
        let ex = expired.get(&r).copied().unwrap_or_default();
        let c = conn_counts(&bpf.real_conns(r)?, &ex);
        if (c.active, c.inactive) != w {
            bail!(
                "round {round}, {what}: real {r} counts (active, inactive) = ({}, {}), its flows in the table say {w:?}",
                c.active as i64,
                c.inactive as i64
            );
        }
    }
    Ok(())
}

/// Flow `i`'s key.
fn key(i: u16) -> lb_common::FlowKey {
    flow_key(addr(CLIENT), addr(VIP), FIRST_PORT + i, VPORT, TCP)
}

/// SYN then ACK of every flow from both CPUs at once: each ends ESTABLISHED (a flow in
/// TIME_WAIT or CLOSE is expired by the SYN and recorded anew, conn_reuse_mode), checked.
fn open_all(bpf: &mut Bpf, round: u32, expired: &BTreeMap<u32, ConnExpiry>) -> Result<()> {
    at_once(bpf, [all(SYN), all(SYN)])?;
    check(bpf, round, "after SYN on both CPUs", expired)?;
    at_once(bpf, [all(ACK), all(ACK)])?;
    check(bpf, round, "after ACK on both CPUs", expired)
}

/// The client's packet of every flow with flags `f`.
fn all(f: u8) -> Vec<Vec<u8>> {
    (0..FLOWS).map(|i| client(i, f)).collect()
}

/// Client FIN against the real's FIN or RST, two ACKs of a SYN_RECV flow, two SYNs
/// reusing a closed flow, and finally two packets expiring a flow of a deleted real: each
/// on CPU 0 and CPU 1 at once, for every flow, checked after each step.
fn hammer(bpf: &mut Bpf) -> Result<()> {
    let none = BTreeMap::new();
    let t = Instant::now();
    let mut rounds = 0;
    while rounds < MAX_ROUNDS && t.elapsed() < MAX_TIME {
        rounds += 1;
        open_all(bpf, rounds, &none)?;
        // The client's FIN on CPU 0 and the real's FIN (even rounds) or RST (odd) on
        // CPU 1: ESTABLISHED → inactive from both sides at once.
        let reals = flow_reals(bpf)?;
        let f = if rounds % 2 == 0 { FIN | ACK } else { RST };
        let replies = (0..FLOWS).map(|i| reply(reals[i as usize], i, f)).collect();
        at_once(bpf, [all(FIN | ACK), replies])?;
        check(
            bpf,
            rounds,
            "after client FIN and real FIN/RST at once",
            &none,
        )?;
    }
    // Remove every flow from both CPUs at once: the reals deleted (not ACTIVE) with
    // expire_nodest_conn 1, each flow's next packet expires it; no real is left to take
    // the packet, so nothing is recorded again and every count must be back to 0.
    bpf.put_settings(lb_common::conn::Settings {
        expire_nodest_conn: 1,
        ..Default::default()
    })?;
    for (id, r) in &provision().reals {
        bpf.put_real(
            *id,
            Real {
                flags: RealFlags(0),
                ..*r
            },
        )?;
    }
    at_once(bpf, [all(ACK), all(ACK)])?;
    check(
        bpf,
        rounds,
        "after expiring every flow from both CPUs",
        &none,
    )?;
    let left = bpf.flow_count()?;
    if left != 0 {
        bail!("{left} flows left after expire_nodest_conn");
    }
    eprintln!(
        "race hammer: {rounds} rounds of {FLOWS} flows in {:.1} s ({} state_cas_exhausted)",
        t.elapsed().as_secs_f64(),
        cas_exhausted(bpf)?
    );
    Ok(())
}

/// The sweep against the data path: every flow ESTABLISHED, then CPU 0 sends the client's
/// FIN (even rounds) or RST (odd) while CPU 1 runs lb_ops REAP on the same flow, as lb-ctl's
/// sweep would for a flow it judged expired (with the value it read before). Only what the
/// REAP removed is booked (as REAL_EXPIRED, by the flags it reports); a FIN that came first
/// leaves the flow live (CHANGED). Before REAP the sweep took the value with
/// lookup-and-delete and booked it active, and the FIN of a CPU that had looked the flow up
/// moved the deleted element and counted it inactive as well.
fn hammer_reap(bpf: &mut Bpf) -> Result<()> {
    let mut expired: BTreeMap<u32, ConnExpiry> = BTreeMap::new();
    let t = Instant::now();
    let (mut rounds, mut removed, mut changed) = (0, 0u64, 0u64);
    while rounds < MAX_ROUNDS && t.elapsed() < MAX_TIME {
        rounds += 1;
        open_all(bpf, rounds, &expired)?;
        let seen: Vec<_> = (0..FLOWS)
            .map(|i| {
                let v = bpf.flow(&key(i))?.with_context(|| format!("flow {i}"))?;
                Ok((key(i), v))
            })
            .collect::<Result<_>>()?;
        let f = if rounds % 2 == 0 { FIN | ACK } else { RST };
        let booked = reap_at_once(bpf, all(f), &seen)?;
        for (real_id, e) in booked {
            let x = expired.entry(real_id).or_default();
            match e.outcome {
                reap::REMOVED => {
                    removed += 1;
                    if e.flags as u8 & FlowFlags::INACTIVE != 0 {
                        x.inactive += 1;
                    } else {
                        x.active += 1;
                    }
                }
                reap::CHANGED => changed += 1,
                _ => {}
            }
        }
        check(bpf, rounds, "after a FIN/RST and a REAP at once", &expired)?;
    }
    eprintln!(
        "reap hammer: {rounds} rounds of {FLOWS} flows in {:.1} s: {removed} removed, {changed} changed first ({} state_cas_exhausted)",
        t.elapsed().as_secs_f64(),
        cas_exhausted(bpf)?
    );
    Ok(())
}

/// `state_cas_exhausted` so far (summed over CPUs; the counters are never cleared).
fn cas_exhausted(bpf: &mut Bpf) -> Result<u64> {
    Ok(bpf.snapshot(&[], &[])?.counters[Counter::STATE_CAS_EXHAUSTED.0 as usize])
}

/// CPU 0 sends `frames[i]` while CPU 1 runs REAP on `seen[i]`, flow by flow at once;
/// returns each REAP entry with its flow's real.
fn reap_at_once(
    bpf: &Bpf,
    frames: Vec<Vec<u8>>,
    seen: &[(lb_common::FlowKey, lb_common::FlowValue)],
) -> Result<Vec<(u32, ReapEntry)>> {
    let turn = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let sync = |i: usize| -> Result<()> {
        turn.fetch_add(1, Ordering::AcqRel);
        while turn.load(Ordering::Acquire) < 2 * (i as u64 + 1) {
            if failed.load(Ordering::Relaxed) {
                bail!("the other thread failed");
            }
            std::hint::spin_loop();
        }
        Ok(())
    };
    std::thread::scope(|s| {
        let packets = s.spawn(|| -> Result<()> {
            if !pin(0) {
                bail!("cannot pin to CPU 0");
            }
            for (i, f) in frames.iter().enumerate() {
                sync(i)?;
                if let Err(e) = bpf.run(f, IF_LO) {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(())
        });
        let sweep = s.spawn(|| -> Result<Vec<(u32, ReapEntry)>> {
            if !pin(1) {
                bail!("cannot pin to CPU 1");
            }
            let mut out = Vec::with_capacity(seen.len());
            for (i, (k, v)) in seen.iter().enumerate() {
                let mut e = [reap_entry(k, v)];
                sync(i)?;
                let r = bpf
                    .run_ops(op::REAP, &reap_request(&e))
                    .and_then(|back| reap_reply(&back, &mut e).context("short REAP reply"));
                if let Err(err) = r {
                    failed.store(true, Ordering::Relaxed);
                    return Err(err);
                }
                out.push((ref_id(v.real_id), e[0]));
            }
            Ok(out)
        });
        packets.join().expect("packet thread panicked")?;
        sweep.join().expect("sweep thread panicked")
    })
}

/// The hammers' provision with its service persistent (mask 0: one template for every
/// client) and `settings`.
fn persistent(bpf: &mut Bpf, settings: lb_common::conn::Settings) -> Result<()> {
    let mut p = provision();
    p.services = vec![Svc {
        id: 1,
        vip: addr(VIP),
        port: VPORT,
        proto: TCP,
        flags: VipFlags::HASH_PORTS | VipFlags::PERSISTENT,
        table: Table::Maglev(13),
    }];
    p.settings = Some(settings);
    bpf.clear()?;
    p.apply(bpf)
}

/// A persistent service (mask 0: one template for every client); each round the template
/// is removed, then CPU 0 and CPU 1 send the SYN of two different connections at once.
/// One template exists afterwards (IPVS makes it under its lock), so the reals' template
/// binds grow by exactly one a round, and both connections go to its real. Failed on the
/// insert-or-replace of one template by every CPU (~40 leaks and ~35 split rounds in 2000).
fn hammer_persist(bpf: &mut Bpf) -> Result<()> {
    persistent(bpf, lb_common::conn::Settings::default())?;
    let binds = |bpf: &mut Bpf| -> Result<u64> {
        let mut n = 0;
        for r in 1..=REALS.len() as u32 {
            n += bpf.real_conns(r)?.templates;
        }
        Ok(n)
    };
    let t = Instant::now();
    let mut rounds = 0u64;
    let mut leaked = 0u64;
    let mut split = 0u64;
    let mut last_leak = 0u64;
    let start = binds(bpf)?;
    let mut removed = 0u64;
    while rounds < 2000 && t.elapsed() < MAX_TIME {
        // Remove the template(s) and flows (as an expiry would, bookkeeping locally).
        removed += bpf.persist_count()? as u64;
        bpf.clear_persist_and_flows4()?;
        let i = (rounds % 100) as u16;
        at_once(
            bpf,
            [vec![client(2 * i, SYN)], vec![client(2 * i + 1, SYN)]],
        )?;
        rounds += 1;
        let got = binds(bpf)? - start - removed;
        let present = bpf.persist_count()? as u64;
        // Binds not matched by a template, in all rounds so far.
        let leak = got - present;
        if leak != last_leak {
            leaked += 1;
            last_leak = leak;
        }
        let a = bpf.flow(&key(2 * i))?.map(|v| ref_id(v.real_id));
        let b = bpf.flow(&key(2 * i + 1))?.map(|v| ref_id(v.real_id));
        if a != b {
            split += 1;
        }
    }
    eprintln!(
        "persist hammer: {rounds} rounds, rounds leaking a template bind: {leaked}, rounds with one client on two reals: {split}"
    );
    if leaked != 0 || split != 0 {
        bail!("{leaked} rounds leaked a template bind, {split} split a client, in {rounds} rounds");
    }
    Ok(())
}

/// The client's template names real 1, quiescent (weight 0) with
/// expire_quiescent_template 1; CPU 0 and CPU 1 send a SYN at once. The one template is
/// replaced once, so real 1's template count falls by exactly one a round (it fell by two
/// in ~90 of 2000 rounds when every CPU replaced it, and wrapped).
fn hammer_persist_stale(bpf: &mut Bpf) -> Result<()> {
    use lb_common::{PersistKey, PersistValue};
    persistent(
        bpf,
        lb_common::conn::Settings {
            expire_quiescent_template: 1,
            ..Default::default()
        },
    )?;
    // Real 1 quiescent (in the table still, weight 0 in its slot).
    let mut r1 = real(REALS[0]);
    r1.weight = 0;
    bpf.put_real(1, r1)?;
    let (_, family) = to_raw(addr(CLIENT));
    let pkey = PersistKey {
        client: [0; 4],
        group: 1,
        family,
        proto: TCP,
        _pad: [0; 2],
    };
    let t = Instant::now();
    let (mut rounds, mut double) = (0u64, 0u64);
    while rounds < 2000 && t.elapsed() < MAX_TIME {
        bpf.clear_persist_and_flows4()?;
        let template = PersistValue {
            real_id: 1,
            svc_id: 1,
            last_seen_s: 0,
            _pad: 0,
        };
        bpf.put_persist(pkey, template)?;
        let before = bpf.real_conns(1)?.templates;
        let i = (rounds % 100) as u16;
        at_once(
            bpf,
            [vec![client(2 * i, SYN)], vec![client(2 * i + 1, SYN)]],
        )?;
        rounds += 1;
        let after = bpf.real_conns(1)?.templates;
        if before.wrapping_sub(after) == 2 {
            double += 1;
        }
    }
    let now = bpf.real_conns(1)?.templates;
    eprintln!(
        "stale persist hammer: {rounds} rounds, real 1's template replaced twice (decremented by 2) in {double}; real 1 templates events now {}",
        now as i64
    );
    if double != 0 {
        bail!("{double} double decrements in {rounds} rounds");
    }
    Ok(())
}
