//! Running `lb_ops` (lb-common `ops`): requests to the kernel by BPF_PROG_TEST_RUN, for what
//! map system calls cannot do. The program is pinned as `lb_ops` next to `lb_xdp`.

use super::MapsError;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya_obj::programs::XdpAttachType;
use lb_common::consts::PROG_OPS;
use lb_common::ops::{
    ClockReply, OP_BUFFER_MIN, OpHeader, REAP_BATCH, ReapEntry, ReapHeader, op, status,
};
use std::path::{Path, PathBuf};

/// The pinned `lb_ops` program.
pub struct Ops {
    prog: Xdp,
    path: PathBuf,
}

impl Ops {
    /// Opens `lb_ops` pinned under `dir`.
    pub fn open(dir: &Path) -> Result<Ops, MapsError> {
        let path = dir.join(PROG_OPS);
        if !path.exists() {
            return Err(MapsError::NoOps(dir.to_path_buf()));
        }
        let prog = Xdp::from_pin(&path, XdpAttachType::Interface).map_err(|e| MapsError::Ops {
            path: path.clone(),
            source: Box::new(e),
        })?;
        Ok(Ops { prog, path })
    }

    /// Runs operation `code` on `payload` (at least `reply_len` bytes come back) and
    /// returns the payload as the program left it.
    fn run(&self, code: u32, payload: &[u8], reply_len: usize) -> Result<Vec<u8>, MapsError> {
        let hdr = OpHeader {
            op: code,
            status: status::PENDING,
        };
        let mut buf = bytemuck::bytes_of(&hdr).to_vec();
        buf.extend_from_slice(payload);
        let len = buf
            .len()
            .max(size_of::<OpHeader>() + reply_len)
            .max(OP_BUFFER_MIN);
        buf.resize(len, 0);
        let mut out = vec![0u8; len];
        let res = self
            .prog
            .test_run(TestRunOptions {
                data_in: Some(&buf),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .map_err(|e| MapsError::Ops {
                path: self.path.clone(),
                source: Box::new(e),
            })?;
        out.truncate(res.data_size_out as usize);
        let got: OpHeader = out
            .get(..size_of::<OpHeader>())
            .map(bytemuck::pod_read_unaligned)
            .unwrap_or_default();
        if got.status != status::OK {
            return Err(MapsError::OpFailed {
                op: code,
                status: got.status,
            });
        }
        Ok(out.split_off(size_of::<OpHeader>()))
    }

    /// The data path's clock and the kernel's jiffies, read now.
    pub fn clock(&self) -> Result<ClockReply, MapsError> {
        let out = self.run(op::CLOCK, &[], size_of::<ClockReply>())?;
        Ok(bytemuck::pod_read_unaligned(
            &out[..size_of::<ClockReply>()],
        ))
    }

    /// `REAP` (lb-common `ops`): every entry's flow claimed if it is still as the sweep
    /// saw it, and deleted; each entry's `outcome` and `flags` are written back. Any number
    /// of entries, run in batches of `REAP_BATCH`.
    pub fn reap(&self, entries: &mut [ReapEntry]) -> Result<(), MapsError> {
        for batch in entries.chunks_mut(REAP_BATCH) {
            let req = reap_request(batch);
            let out = self.run(op::REAP, &req, req.len())?;
            reap_reply(&out, batch).ok_or(MapsError::OpFailed {
                op: op::REAP,
                status: status::SHORT,
            })?;
        }
        Ok(())
    }
}

/// The payload of a `REAP` run over `batch` (at most `REAP_BATCH` entries).
pub fn reap_request(batch: &[ReapEntry]) -> Vec<u8> {
    debug_assert!(batch.len() <= REAP_BATCH);
    let hdr = ReapHeader {
        count: batch.len() as u32,
        _pad: 0,
    };
    let mut v = bytemuck::bytes_of(&hdr).to_vec();
    v.extend_from_slice(bytemuck::cast_slice(batch));
    v
}

/// Copies a `REAP` run's answer (`out`: the payload as the program left it) back into
/// `batch`; `None` when it is too short.
pub fn reap_reply(out: &[u8], batch: &mut [ReapEntry]) -> Option<()> {
    let body = out.get(size_of::<ReapHeader>()..)?;
    let n = size_of::<ReapEntry>();
    if body.len() < size_of_val(batch) {
        return None;
    }
    for (e, b) in batch.iter_mut().zip(body.chunks_exact(n)) {
        *e = bytemuck::pod_read_unaligned(b);
    }
    Some(())
}
