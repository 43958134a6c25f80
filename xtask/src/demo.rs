//! `cargo xtask demo`: builds lb, brings up the namespace lab (client, director, three real
//! servers), configures one service per forward mode and family, sends real HTTP requests
//! through each VIP and shows which real answered each. Everything is removed at the end,
//! on failure and on Ctrl-C.

use crate::util::{is_root, note, step};
use anyhow::{Context, Result, bail};
use lb_tests::lab::{self, Family, Lab, Names};
use lb_tests::netns;
use std::time::Instant;

pub fn run(requests: usize, build: bool) -> Result<()> {
    if !is_root() {
        bail!("the demo needs root (network namespaces, XDP, bpffs): run it as root");
    }
    let t = Instant::now();
    // Ctrl-C removes the lab's namespaces and pin directories (its guards are registered).
    netns::remove_on_ctrlc();
    if build {
        crate::build::run()?;
    }
    let mut names = None;
    let result = show(&mut names, requests);
    let left = names.map(|n| n.leftovers()).unwrap_or_default();
    if left.is_empty() {
        step("cleaned up: no namespace, link or pinned object left");
    } else {
        eprintln!("warning: left behind: {}", left.join(", "));
    }
    step(&format!("demo took {:.1} s", t.elapsed().as_secs_f64()));
    let bad = result?;
    if bad > 0 {
        bail!("{bad} service(s) did not answer every request from at least 2 real servers");
    }
    if !left.is_empty() {
        bail!("the lab was not removed completely");
    }
    Ok(())
}

/// Runs the demo inside a lab guard; returns how many services fell short. `names` gets
/// the lab's names, to check after the lab is dropped that nothing is left.
fn show(names: &mut Option<Names>, requests: usize) -> Result<usize> {
    let t = Instant::now();
    step("building the lab: client, director, switch and 3 real-server namespaces");
    let lab = Lab::new().context("building the lab")?;
    *names = Some(lab.names().clone());
    let n = lab.names();
    note(&format!("namespaces: {}", n.namespaces().join(" ")));
    note(&format!("director pins: {}", n.pin_dir.display()));
    note(&format!("up in {:.1} s", t.elapsed().as_secs_f64()));

    step("loading lb on the director (out0 + in0, generic XDP) and decap on each real");
    lab.start_lb().context("starting lb")?;

    step("services (mh, -b mh-port) with real1..real3 at weight 1");
    let mut services = Vec::new();
    for mode in lab::MODES {
        for f in Family::ALL {
            let vip = lab.add_service(mode, f).with_context(|| {
                format!("adding the {} {} service", lab::mode_name(mode), f.name())
            })?;
            services.push((mode, vip));
        }
    }

    step(&format!(
        "{requests} HTTP requests from the client (198.18.0.1 / 2001:db8::1) to each VIP"
    ));
    println!(
        "    {:<22} {:<6} {:>8}  {:>5} {:>5} {:>5}  answered by, in order",
        "service", "mode", "answered", "real1", "real2", "real3"
    );
    let mut bad = 0;
    for (mode, vip) in services {
        let answers = lab
            .http_get_many(vip, requests)
            .context("sending requests")?;
        let mut per_real = [0usize; lab::REALS];
        let mut order = Vec::new();
        let mut errors = Vec::new();
        for a in &answers {
            match a
                .as_deref()
                .ok()
                .and_then(|name| (1..=lab::REALS).find(|&i| lab::real_name(i) == name))
            {
                Some(i) => {
                    per_real[i - 1] += 1;
                    order.push(i.to_string());
                }
                None => {
                    order.push("x".into());
                    errors.push(match a {
                        Ok(other) => format!("unexpected body {other:?}"),
                        Err(e) => e.clone(),
                    });
                }
            }
        }
        let ok_count = answers.len() - errors.len();
        let distinct = per_real.iter().filter(|&&c| c > 0).count();
        let good = errors.is_empty() && distinct >= 2;
        println!(
            "    {:<22} {:<6} {:>8}  {:>5} {:>5} {:>5}  {}{}",
            vip.to_string(),
            mode.ipvsadm_name(),
            format!("{ok_count}/{requests}"),
            per_real[0],
            per_real[1],
            per_real[2],
            order.join(" "),
            if good { "" } else { "   <- FAIL" }
        );
        if let Some(e) = errors.first() {
            note(&format!("  first error: {e}"));
        }
        if !good {
            bad += 1;
        }
    }
    step("lb's own view: lb-ctl -L -n --stats");
    match lab.ctl(&["-L", "-n", "--stats"]) {
        Ok(list) => list.lines().for_each(note),
        Err(e) => note(&format!("(listing failed: {e})")),
    }
    match lab.ctl(&["counters"]) {
        Ok(c) => {
            let shown: Vec<String> = c
                .lines()
                .filter(|l| l.split_whitespace().nth(1).is_some_and(|v| v != "0"))
                .map(str::to_string)
                .collect();
            note(&format!(
                "director counters (non-zero): {}",
                shown.join(", ")
            ));
        }
        Err(e) => note(&format!("(counters failed: {e})")),
    }

    step("unloading lb and decap, removing the lab");
    if let Err(e) = lab.stop_lb() {
        note(&format!(
            "(unload said: {e}; the lab guard removes the pins anyway)"
        ));
    }
    drop(lab);
    Ok(bad)
}
