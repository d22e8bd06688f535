//! A full disk, as users meet it: a store whose data directory is a small tmpfs (96 MiB,
//! 40 MiB of it taken by a ballast file) is filled through the official Rust client until
//! its writes are refused with `disk_full`; everything acknowledged is still read back,
//! deletes still go through, placement sees the disk's capacity and how little is left;
//! removing the ballast frees space and writes resume, with nothing lost.
//!
//! The tmpfs needs root (`mount -t tmpfs`); where mounting is impossible the test prints
//! `SKIPPED: <reason>` and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::pd_api::{parse_byte_size, PdHttp, StoreInfo};
use e2e::{
    init_test_tracing, must_eventually, must_within, with_deadline, Api, Cluster, ClusterBuilder,
};
use tikv_client::RawClient;

const MIB: u64 = 1 << 20;
const TMPFS_BYTES: u64 = 96 * MIB;
const BALLAST_BYTES: u64 = 40 * MIB;
const RESERVE_BYTES: u64 = 8 * MIB;
const VALUE_BYTES: usize = 64 << 10;
const BATCH: usize = 16;
/// More batches than the tmpfs can hold: the loop must end on a refusal before this.
const MAX_BATCHES: usize = 400;
const CALL: Duration = Duration::from_secs(30);

/// Unmounts the tmpfs when dropped (after the cluster using it is gone).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The deterministic, incompressible value of key `i`.
fn value(i: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..VALUE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn key(i: usize) -> String {
    format!("fill/{i:06}")
}

fn is_disk_full(e: &tikv_client::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("disk full") && text.contains("disk_full")
}

/// Placement's view of the only store.
async fn store_info(cluster: &Cluster) -> Result<StoreInfo, String> {
    let stores = PdHttp::default()
        .store_infos(&cluster.pd_endpoint())
        .await?;
    stores
        .into_iter()
        .next()
        .ok_or_else(|| "no store".to_owned())
}

/// Raw batch puts of [`BATCH`] keys until one is refused; returns how many keys were
/// acknowledged and the refusal.
async fn fill_until_refused(raw: &RawClient) -> (usize, tikv_client::Error) {
    for batch in 0..MAX_BATCHES {
        let pairs: Vec<(String, Vec<u8>)> = (batch * BATCH..(batch + 1) * BATCH)
            .map(|i| (key(i), value(i)))
            .collect();
        match must_within(CALL, "raw batch_put", raw.batch_put(pairs)).await {
            Ok(()) => {}
            Err(e) if is_disk_full(&e) => return (batch * BATCH, e),
            Err(e) => panic!("batch {batch} failed with something else than disk full: {e:?}"),
        }
    }
    panic!("{MAX_BATCHES} batches of {BATCH} x {VALUE_BYTES} bytes fit: nothing was refused");
}

/// Reads keys `0..n` (but `skip`) back and compares them with what was written.
async fn must_read_back(raw: &RawClient, n: usize, skip: usize) {
    for start in (0..n).step_by(BATCH) {
        let keys: Vec<String> = (start..(start + BATCH).min(n))
            .filter(|i| *i != skip)
            .map(key)
            .collect();
        let got = must_within(CALL, "raw batch_get", raw.batch_get(keys.clone()))
            .await
            .expect("reads are served on a full disk");
        assert_eq!(got.len(), keys.len(), "keys from {start} lost");
        for pair in got {
            let (k, v): (tikv_client::Key, Vec<u8>) = pair.into();
            let k = String::from_utf8_lossy(&Vec::<u8>::from(k)).into_owned();
            let i: usize = k["fill/".len()..].parse().expect("key index");
            assert!(v == value(i), "{k}: wrong value");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_refused_on_full_disk_then_resume() {
    init_test_tracing();
    let root = tempfile::Builder::new()
        .prefix("kv-disk-full-")
        .tempdir()
        .expect("temp dir");
    let data = root.path().join("store-0").join("data");
    let tmpfs = match Tmpfs::mount(&data, TMPFS_BYTES) {
        Ok(t) => t,
        Err(reason) => {
            e2e::testing::skip("disk_full", &reason);
            return;
        }
    };
    let ballast = data.join("ballast");
    std::fs::write(&ballast, vec![7u8; BALLAST_BYTES as usize]).expect("ballast");
    let store_config = format!(
        "[storage]\nreserve-space = {RESERVE_BYTES}\ndisk-check-interval-ms = 50\n\
         [raftstore]\nstore-heartbeat-interval-ms = 500\n"
    );
    with_deadline(Duration::from_secs(300), async {
        let cluster = ClusterBuilder::default()
            .stores(1)
            .dir(root.path())
            .store_config(store_config)
            .must_start()
            .await;
        scenario(&cluster, &ballast).await;
    })
    .await;
    drop(tmpfs);
}

async fn scenario(cluster: &Cluster, ballast: &Path) {
    let capacity = must_eventually("placement shows the tmpfs' capacity", CALL, || async {
        let info = store_info(cluster).await?;
        match parse_byte_size(&info.status.capacity) {
            Some(c) if c > 0 => Ok(c),
            _ => Err(format!("capacity {:?}", info.status.capacity)),
        }
    })
    .await;
    assert_eq!(capacity, TMPFS_BYTES, "capacity is the tmpfs' size");

    let raw = e2e::must_raw_client(cluster, Api::V1).await;
    let (acked, refusal) = fill_until_refused(&raw).await;
    assert!(acked > 0, "the disk was full before the first write");
    let text = format!("{refusal:?}");
    assert!(text.contains("writes that add data are refused"), "{text}");
    tracing::info!(acked, %text, "writes refused");

    // Transactions that would add data are refused too.
    let txn = e2e::must_txn_client(cluster, Api::V1).await;
    let mut t = txn.begin_optimistic().await.expect("begin");
    t.put("txn/k".to_owned(), value(0))
        .await
        .expect("buffered put");
    let committed = must_within(CALL, "txn commit", t.commit()).await;
    let e = committed.expect_err("a prewrite on a full disk is refused");
    assert!(is_disk_full(&e), "{e:?}");

    // Reads are served, and deletes go through.
    must_read_back(&raw, acked, usize::MAX).await;
    let deleted = 3;
    must_within(CALL, "raw delete", raw.delete(key(deleted)))
        .await
        .expect("a delete on a full disk goes through");

    must_eventually("placement sees the disk nearly full", CALL, || async {
        let info = store_info(cluster).await?;
        match parse_byte_size(&info.status.available) {
            Some(a) if a <= RESERVE_BYTES => Ok(()),
            _ => Err(format!("available {:?}", info.status.available)),
        }
    })
    .await;

    // Space comes back: writes resume, and nothing acknowledged was lost.
    std::fs::remove_file(ballast).expect("removing the ballast");
    must_eventually("writes resume once space is freed", CALL, || async {
        raw.put("after/k".to_owned(), value(1))
            .await
            .map_err(|e| format!("{e:?}"))
    })
    .await;
    must_read_back(&raw, acked, deleted).await;
    let gone = raw.get(key(deleted)).await.expect("get");
    assert_eq!(gone, None, "the deleted key stays deleted");
    let after = raw.get("after/k".to_owned()).await.expect("get");
    assert_eq!(after, Some(value(1)));
}
