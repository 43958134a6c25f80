//! BPF packet cases: every case of tests/cases/ runs through BPF_PROG_TEST_RUN on the real
//! `lb_xdp` object as its own libtest trial. Needs root; without it each case is reported
//! ignored with the reason. `cargo test -p lb-tests --test packet [-- FILTER]`.

#[path = "../cases/mod.rs"]
mod cases;

fn main() {
    let mut args = libtest_mimic::Arguments::from_args();
    // One thread: the cases share one loaded program and its maps, and the harness's
    // network namespace belongs to the thread that entered it (the main thread).
    args.test_threads = Some(1);
    let seqs = cases::all();
    let mut names: Vec<&str> = seqs.iter().map(|s| s.name).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        panic!("two packet cases are named {}", w[0]);
    }
    if !args.list {
        lb_tests::case::prepare();
    }
    libtest_mimic::run(&args, lb_tests::case::trials(seqs)).exit();
}
