//! How much work each scenario does: the full suite, or `--quick` for smoke tests.

/// Sizes and repetitions for every scenario.
#[derive(Clone, Debug)]
pub struct Settings {
    pub quick: bool,
    /// Runs per peer in every case, interleaved A B C A B C …
    pub reps: usize,

    pub switch_iters: u64,
    pub call_iters: u64,
    pub switch_batches: usize,

    pub spawn_tasks: usize,
    pub spawn_batch: usize,

    pub round_trips: u64,

    /// The yield case: tasks on the one worker, and yields per task.
    pub yield_tasks: usize,
    pub yield_yields: u64,

    pub idle_tasks: usize,
    pub idle_thread_tasks: usize,
    pub idle_sleep_ms: u64,
    pub capacity_max: usize,

    /// Sleeping tasks spawned per fresh-spawn case.
    pub fresh_spawn_tasks: Vec<usize>,

    pub echo_connections: Vec<usize>,
    pub echo_warmup_ms: u64,
    pub echo_duration_ms: u64,

    pub http_connections: Vec<usize>,
    pub http_duration_s: u64,

    /// The identity scenario (isolated vs shared vs stealing).
    pub identity_yields: u64,
    pub identity_idle_tasks: usize,
    pub identity_idle_sleep_ms: u64,
    pub identity_echo_connections: usize,
    /// The uneven CPU-bound case (`std-peer uneven`): tasks and slices per light task.
    pub uneven_tasks: usize,
    pub uneven_slices: u64,
}

impl Settings {
    /// The full suite (about 17 minutes on 2 cores, most of it the 90 five-second echo runs).
    pub fn full() -> Settings {
        Settings {
            quick: false,
            reps: 3,
            switch_iters: 5_000_000,
            call_iters: 2_000_000,
            switch_batches: 5,
            spawn_tasks: 100_000,
            spawn_batch: 10_000,
            round_trips: 100_000,
            yield_tasks: 4,
            yield_yields: 500_000,
            idle_tasks: 100_000,
            idle_thread_tasks: 10_000,
            idle_sleep_ms: 5_000,
            capacity_max: 1_000_000,
            fresh_spawn_tasks: vec![10_000, 100_000, 1_000_000],
            echo_connections: vec![100, 1_000, 10_000],
            echo_warmup_ms: 300,
            echo_duration_ms: 5_000,
            http_connections: vec![100, 1_000],
            http_duration_s: 5,
            identity_yields: 2_000_000,
            identity_idle_tasks: 10_000,
            identity_idle_sleep_ms: 2_000,
            identity_echo_connections: 1_000,
            uneven_tasks: 64,
            uneven_slices: 200,
        }
    }

    /// One repetition of everything with small counts (about 1–2 minutes).
    pub fn quick() -> Settings {
        Settings {
            quick: true,
            reps: 1,
            switch_iters: 1_000_000,
            call_iters: 300_000,
            switch_batches: 3,
            spawn_tasks: 20_000,
            spawn_batch: 10_000,
            round_trips: 10_000,
            yield_tasks: 4,
            yield_yields: 50_000,
            idle_tasks: 10_000,
            idle_thread_tasks: 2_000,
            idle_sleep_ms: 2_000,
            capacity_max: 100_000,
            fresh_spawn_tasks: vec![10_000],
            echo_connections: vec![100, 1_000],
            echo_warmup_ms: 200,
            echo_duration_ms: 1_000,
            http_connections: vec![100, 1_000],
            http_duration_s: 1,
            identity_yields: 300_000,
            identity_idle_tasks: 5_000,
            identity_idle_sleep_ms: 1_000,
            identity_echo_connections: 1_000,
            uneven_tasks: 32,
            uneven_slices: 100,
        }
    }
}
