//! Every live task, for coroutine dumps and the deadlock check. Kept unless dumps, the control
//! socket and the deadlock check are all off (`CORUN_DUMP=0 CORUN_CONTROL=0
//! CORUN_DEADLOCK=off`), so it costs nothing then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::task::Task;
use crate::sync::SpinLock;

const SHARDS: usize = 64;

/// Live tasks by id (the map is created on first insert).
type Shard = SpinLock<Option<HashMap<u64, Arc<Task>>>>;

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
            .get_or_insert_with(HashMap::new)
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
