//! Every live task, for coroutine dumps and the deadlock check. Kept unless dumps, the control
//! socket and the deadlock check are all off (`CORUN_DUMP=0 CORUN_CONTROL=0
//! CORUN_DEADLOCK=off`), so it costs nothing then.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::task::Task;
use crate::sync::SpinLock;

const SHARDS: usize = 64;

/// Hashes a task id: ids are sequential, so one multiply spreads them well (SipHash, std's
/// default, would cost more than the rest of the insert on every spawn).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map = HashMap<u64, Arc<Task>, BuildHasherDefault<IdHasher>>;

/// Live tasks by id (the map is created on first insert).
type Shard = SpinLock<Option<Map>>;

static ENABLED: AtomicBool = AtomicBool::new(false);
static SHARDS_TABLE: [Shard; SHARDS] = [const { SpinLock::new(None) }; SHARDS];

fn shard(id: u64) -> &'static Shard {
    &SHARDS_TABLE[(id as usize) % SHARDS]
}

/// Starts keeping track of tasks (before the first spawn).
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// In the child of a `fork`: forgets the parent's tasks.
///
/// # Safety
/// Only in a forked child, before anything else runs (see `fork`).
pub unsafe fn reset_in_child() {
    for shard in &SHARDS_TABLE {
        // SAFETY: guaranteed by the caller; the parent's tasks are leaked, never dropped here.
        unsafe { shard.reset_in_child(None) };
    }
}

/// Records a new task.
pub fn insert(task: &Arc<Task>) {
    if ENABLED.load(Ordering::Relaxed) {
        shard(task.id())
            .lock()
            .get_or_insert_with(Map::default)
            .insert(task.id(), task.clone());
    }
}

/// Forgets a finished task.
pub fn remove(task: &Task) {
    if ENABLED.load(Ordering::Relaxed) {
        if let Some(map) = shard(task.id()).lock().as_mut() {
            map.remove(&task.id());
        }
    }
}

/// All live tasks, in id order.
pub fn snapshot() -> Vec<Arc<Task>> {
    let mut all = Vec::new();
    for shard in &SHARDS_TABLE {
        if let Some(map) = shard.lock().as_ref() {
            all.extend(map.values().cloned());
        }
    }
    all.sort_by_key(|t| t.id());
    all
}

/// Calls `f` for every live task, shard by shard (no copy of the list; each shard is locked
/// while its tasks are visited, so `f` must be quick and must not spawn).
pub fn for_each(mut f: impl FnMut(&Task)) {
    for shard in &SHARDS_TABLE {
        if let Some(map) = shard.lock().as_ref() {
            map.values().for_each(|task| f(task));
        }
    }
}
