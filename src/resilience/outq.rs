//! The bounded outbound queue: what the robot has to send while the socket is down.
//!
//! One FIFO of messages of four [`Kind`]s, with a loss policy per kind:
//! - **Result** (`job_complete`, `job_failed`, `job_cancelled`): never dropped. Results are bounded only
//!   by a large hard cap ([`OutQueueLimits::max_results`], 100,000 by default); a result past the cap is
//!   *refused* and handed back in [`PushOutcome::ResultsFull`], so the caller keeps it (the durable
//!   outbox in the store is the real guarantee; this queue is its in-memory front).
//! - **Progress**: coalesced per job. A newer progress for a job replaces the queued one *in place*
//!   (it keeps the older one's position, so it still comes out before that job's result); a progress
//!   pushed while that job's result is queued is stale and dropped. Progress without a job id is
//!   coalesced under "no job".
//! - **Log** and **Control** (register, heartbeat, pong …) share, with progress, a bounded *lossy pool*
//!   of [`OutQueueLimits::max_lossy`] entries (1,000 by default). When it is full, a new entry evicts
//!   the oldest entry of the lowest priority that is not above its own (Log < Progress < Control):
//!   the oldest log first, then the oldest progress, then the oldest control. An entry that finds
//!   only higher-priority entries is dropped itself (a log never evicts a control message).
//!
//! Every loss is returned from [`OutQueue::push`] with the item, so the caller can count and log it,
//! and is counted in [`OutQueue::dropped`]. The queue only knows what it holds: once a job's result
//! has been popped, a later progress for that job is queued again; the agent does not emit progress
//! for a settled job. Invariants: `pop` returns items in push order (a coalesced progress in its first
//! position); push and pop are O(log n); no I/O, no clock.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// What kind of message an item is; decides its loss policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Register, heartbeat, pong, status: bounded, evicted last.
    Control,
    /// `job_progress`: coalesced per job, bounded.
    Progress,
    /// A job's outcome: never dropped.
    Result,
    /// Log entries: bounded, evicted first.
    Log,
}

impl Kind {
    /// The kinds that share the lossy pool, in eviction order (evicted first to last).
    const LOSSY_BY_PRIORITY: [Kind; 3] = [Kind::Log, Kind::Progress, Kind::Control];

    /// Index into per-kind arrays.
    fn idx(self) -> usize {
        match self {
            Kind::Control => 0,
            Kind::Progress => 1,
            Kind::Result => 2,
            Kind::Log => 3,
        }
    }
}

/// The bounds of an [`OutQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OutQueueLimits {
    /// Logs, progress and control messages together (1,000 by default; 0 queues none of them).
    pub max_lossy: usize,
    /// Results (100,000 by default); past it a result is refused and handed back, never dropped.
    pub max_results: usize,
}

impl Default for OutQueueLimits {
    fn default() -> OutQueueLimits {
        OutQueueLimits {
            max_lossy: 1_000,
            max_results: 100_000,
        }
    }
}

/// What [`OutQueue::push`] did with an item. Every variant that carries an item hands back one that
/// is no longer queued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a push may drop or refuse an item; count or log it"]
pub enum PushOutcome<T> {
    /// Queued at the back.
    Queued,
    /// A progress that replaced, in place, the older progress of the same job (given back).
    Coalesced {
        /// The progress it replaced.
        replaced: T,
    },
    /// Queued at the back; the lossy pool was full, so its oldest entry of `kind` was dropped.
    QueuedEvicting {
        /// The kind of the dropped entry.
        kind: Kind,
        /// The dropped entry.
        evicted: T,
    },
    /// Not queued: the lossy pool is full of higher-priority entries (e.g. a log among controls).
    DroppedFull {
        /// The item pushed.
        item: T,
    },
    /// Not queued: a progress for a job whose result is queued is stale.
    DroppedStale {
        /// The item pushed.
        item: T,
    },
    /// Not queued: a result past [`OutQueueLimits::max_results`]. Keep it and push it again later.
    ResultsFull {
        /// The result pushed.
        item: T,
    },
}

impl<T> PushOutcome<T> {
    /// Whether the pushed item is now in the queue.
    pub fn is_queued(&self) -> bool {
        matches!(
            self,
            PushOutcome::Queued
                | PushOutcome::Coalesced { .. }
                | PushOutcome::QueuedEvicting { .. }
        )
    }
}

/// Counts the status output shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutQueueStats {
    /// Items queued.
    pub len: usize,
    /// Control messages queued.
    pub control: usize,
    /// Progress messages queued.
    pub progress: usize,
    /// Results queued.
    pub results: usize,
    /// Log entries queued.
    pub logs: usize,
    /// Items lost so far: evicted, dropped when full, stale progress.
    pub dropped: u64,
    /// Progress messages replaced by a newer one of the same job.
    pub coalesced: u64,
    /// Results refused at the hard cap (handed back, not lost).
    pub refused: u64,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    kind: Kind,
    job_id: Option<Box<str>>,
    item: T,
}

/// A FIFO of outbound messages with per-kind loss rules; see the module docs.
#[derive(Debug, Clone)]
pub struct OutQueue<T> {
    limits: OutQueueLimits,
    next_seq: u64,
    /// Every queued item by sequence number: the FIFO order.
    entries: BTreeMap<u64, Entry<T>>,
    /// Sequence numbers of the queued lossy items, per kind (indexed like `Kind::idx`), oldest first.
    lossy_order: [VecDeque<u64>; 4],
    counts: [usize; 4],
    /// The queued progress of each job.
    progress_of_job: HashMap<Option<Box<str>>, u64>,
    /// Results queued per job (for the stale-progress rule).
    results_of_job: HashMap<Box<str>, usize>,
    dropped: u64,
    coalesced: u64,
    refused: u64,
}

impl<T> Default for OutQueue<T> {
    fn default() -> OutQueue<T> {
        OutQueue::new(OutQueueLimits::default())
    }
}

impl<T> OutQueue<T> {
    /// An empty queue with these bounds.
    pub fn new(limits: OutQueueLimits) -> OutQueue<T> {
        OutQueue {
            limits,
            next_seq: 0,
            entries: BTreeMap::new(),
            lossy_order: Default::default(),
            counts: [0; 4],
            progress_of_job: HashMap::new(),
            results_of_job: HashMap::new(),
            dropped: 0,
            coalesced: 0,
            refused: 0,
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> OutQueueLimits {
        self.limits
    }

    /// Queues `item` by the rules of its `kind` (module docs); says what happened and hands back any
    /// item that is not queued.
    pub fn push(&mut self, kind: Kind, job_id: Option<&str>, item: T) -> PushOutcome<T> {
        match kind {
            Kind::Result => {
                if self.counts[Kind::Result.idx()] >= self.limits.max_results {
                    self.refused += 1;
                    return PushOutcome::ResultsFull { item };
                }
                if let Some(job_id) = job_id {
                    *self.results_of_job.entry(job_id.into()).or_insert(0) += 1;
                }
                self.append(kind, job_id, item);
                PushOutcome::Queued
            }
            Kind::Progress => {
                if job_id.is_some_and(|job_id| self.results_of_job.contains_key(job_id)) {
                    self.dropped += 1;
                    return PushOutcome::DroppedStale { item };
                }
                let queued = self.progress_of_job.get(&job_id.map(Box::from)).copied();
                if let Some(entry) = queued.and_then(|seq| self.entries.get_mut(&seq)) {
                    self.coalesced += 1;
                    let replaced = std::mem::replace(&mut entry.item, item);
                    return PushOutcome::Coalesced { replaced };
                }
                self.push_lossy(kind, job_id, item)
            }
            Kind::Log | Kind::Control => self.push_lossy(kind, job_id, item),
        }
    }

    /// The oldest item and its kind, without removing it (send, then `pop` once the send succeeded).
    pub fn front(&self) -> Option<(Kind, &T)> {
        self.entries
            .first_key_value()
            .map(|(_, entry)| (entry.kind, &entry.item))
    }

    /// Removes and returns the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        let (seq, entry) = self.entries.pop_first()?;
        let kind = entry.kind;
        self.counts[kind.idx()] -= 1;
        match kind {
            Kind::Result => {
                if let Some(job_id) = entry.job_id {
                    if let Some(n_results) = self.results_of_job.get_mut(&job_id) {
                        *n_results -= 1;
                        if *n_results == 0 {
                            self.results_of_job.remove(&job_id);
                        }
                    }
                }
            }
            Kind::Progress | Kind::Log | Kind::Control => {
                // The oldest item overall is the oldest of its kind.
                let front = self.lossy_order[kind.idx()].pop_front();
                debug_assert_eq!(front, Some(seq));
                if kind == Kind::Progress {
                    self.progress_of_job.remove(&entry.job_id);
                }
            }
        }
        Some(entry.item)
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Items of `kind` queued.
    pub fn len_of(&self, kind: Kind) -> usize {
        self.counts[kind.idx()]
    }

    /// Items lost so far (evicted, dropped when full, stale progress). Coalesced progress and
    /// refused results are counted apart.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Progress messages replaced by a newer one of the same job so far.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    /// Results refused at the hard cap so far (handed back to the caller, not lost).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The counts the status output shows.
    pub fn stats(&self) -> OutQueueStats {
        OutQueueStats {
            len: self.len(),
            control: self.len_of(Kind::Control),
            progress: self.len_of(Kind::Progress),
            results: self.len_of(Kind::Result),
            logs: self.len_of(Kind::Log),
            dropped: self.dropped,
            coalesced: self.coalesced,
            refused: self.refused,
        }
    }

    fn lossy_len(&self) -> usize {
        Kind::LOSSY_BY_PRIORITY
            .iter()
            .map(|kind| self.counts[kind.idx()])
            .sum()
    }

    /// Queues a Log, Control or (new) Progress item, evicting by priority when the pool is full.
    fn push_lossy(&mut self, kind: Kind, job_id: Option<&str>, item: T) -> PushOutcome<T> {
        if self.lossy_len() < self.limits.max_lossy {
            self.append(kind, job_id, item);
            return PushOutcome::Queued;
        }
        // Either one entry is evicted or the new one is dropped: one loss either way.
        self.dropped += 1;
        // Candidates, lowest priority first: kinds up to and including the incoming one's.
        let candidates = Kind::LOSSY_BY_PRIORITY
            .into_iter()
            .take_while(|candidate| *candidate != kind)
            .chain(std::iter::once(kind));
        for candidate in candidates {
            if let Some(evicted) = self.remove_oldest_lossy(candidate) {
                self.append(kind, job_id, item);
                return PushOutcome::QueuedEvicting {
                    kind: candidate,
                    evicted,
                };
            }
        }
        PushOutcome::DroppedFull { item }
    }

    fn remove_oldest_lossy(&mut self, kind: Kind) -> Option<T> {
        let seq = self.lossy_order[kind.idx()].pop_front()?;
        let entry = self.entries.remove(&seq)?;
        self.counts[kind.idx()] -= 1;
        if kind == Kind::Progress {
            self.progress_of_job.remove(&entry.job_id);
        }
        Some(entry.item)
    }

    fn append(&mut self, kind: Kind, job_id: Option<&str>, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let job_id: Option<Box<str>> = job_id.map(Box::from);
        match kind {
            Kind::Result => {}
            Kind::Progress => {
                self.progress_of_job.insert(job_id.clone(), seq);
                self.lossy_order[kind.idx()].push_back(seq);
            }
            Kind::Log | Kind::Control => self.lossy_order[kind.idx()].push_back(seq),
        }
        self.counts[kind.idx()] += 1;
        self.entries.insert(seq, Entry { kind, job_id, item });
    }
}

#[cfg(test)]
mod tests {
    use super::Kind::{Control, Log, Progress, Result};
    use super::*;

    /// A push: kind, job id ("" for none), label.
    type Push = (Kind, &'static str, &'static str);

    fn describe(outcome: PushOutcome<&str>) -> String {
        match outcome {
            PushOutcome::Queued => "queued".into(),
            PushOutcome::Coalesced { replaced } => format!("coalesced {replaced}"),
            PushOutcome::QueuedEvicting { kind, evicted } => format!("evicted {kind:?} {evicted}"),
            PushOutcome::DroppedFull { item } => format!("dropped-full {item}"),
            PushOutcome::DroppedStale { item } => format!("dropped-stale {item}"),
            PushOutcome::ResultsFull { item } => format!("results-full {item}"),
        }
    }

    fn push_all(queue: &mut OutQueue<&'static str>, pushes: &[Push]) -> Vec<String> {
        pushes
            .iter()
            .map(|&(kind, job, label)| {
                let job = if job.is_empty() { None } else { Some(job) };
                describe(queue.push(kind, job, label))
            })
            .collect()
    }

    fn drain(queue: &mut OutQueue<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.pop()).collect()
    }

    /// (name, pushes, outcomes other than "queued" as (push index, outcome), pop order, dropped)
    type Case = (
        &'static str,
        &'static [Push],
        &'static [(usize, &'static str)],
        &'static [&'static str],
        u64,
    );

    const SMALL: OutQueueLimits = OutQueueLimits {
        max_lossy: 3,
        max_results: 2,
    };

    #[test]
    fn push_then_drain() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("fifo across kinds",
                &[(Control, "", "c1"), (Log, "j1", "l1"), (Progress, "j1", "p1"), (Result, "j1", "r1")],
                &[], &["c1", "l1", "p1", "r1"], 0),
            ("progress coalesces in place",
                &[(Progress, "j1", "p1"), (Log, "", "l1"), (Progress, "j1", "p2")],
                &[(2, "coalesced p1")], &["p2", "l1"], 0),
            ("coalescing is per job",
                &[(Progress, "j1", "a"), (Progress, "j2", "b"), (Progress, "j1", "c"), (Progress, "j2", "d")],
                &[(2, "coalesced a"), (3, "coalesced b")], &["c", "d"], 0),
            ("progress without a job coalesces under no job",
                &[(Progress, "", "a"), (Progress, "j1", "b"), (Progress, "", "c")],
                &[(2, "coalesced a")], &["c", "b"], 0),
            ("progress after the job's result is stale",
                &[(Progress, "j1", "p1"), (Result, "j1", "r1"), (Progress, "j1", "p2"), (Progress, "j2", "q1")],
                &[(2, "dropped-stale p2")], &["p1", "r1", "q1"], 1),
            ("a coalesced progress stays before the job's result",
                &[(Progress, "j1", "p1"), (Log, "", "l1"), (Progress, "j1", "p2"), (Result, "j1", "r1")],
                &[(2, "coalesced p1")], &["p2", "l1", "r1"], 0),
            ("a full pool evicts the oldest log",
                &[(Log, "", "l1"), (Log, "", "l2"), (Control, "", "c1"), (Log, "", "l3")],
                &[(3, "evicted Log l1")], &["l2", "c1", "l3"], 1),
            ("logs go before older control messages",
                &[(Control, "", "c1"), (Control, "", "c2"), (Log, "", "l1"), (Control, "", "c3")],
                &[(3, "evicted Log l1")], &["c1", "c2", "c3"], 1),
            ("a log never evicts a control message",
                &[(Control, "", "c1"), (Control, "", "c2"), (Control, "", "c3"), (Log, "", "l1")],
                &[(3, "dropped-full l1")], &["c1", "c2", "c3"], 1),
            ("control evicts the oldest control when nothing lower is queued",
                &[(Control, "", "c1"), (Control, "", "c2"), (Control, "", "c3"), (Control, "", "c4")],
                &[(3, "evicted Control c1")], &["c2", "c3", "c4"], 1),
            ("progress evicts logs, not controls; logs do not evict progress",
                &[(Log, "", "l1"), (Control, "", "c1"), (Control, "", "c2"), (Progress, "j1", "p1"),
                  (Log, "", "l2"), (Progress, "j2", "p2")],
                &[(3, "evicted Log l1"), (4, "dropped-full l2"), (5, "evicted Progress p1")],
                &["c1", "c2", "p2"], 3),
            ("an evicted progress no longer coalesces",
                &[(Progress, "j1", "a"), (Progress, "j2", "b"), (Progress, "j3", "c"), (Control, "", "c1"),
                  (Progress, "j1", "d")],
                &[(3, "evicted Progress a"), (4, "evicted Progress b")], &["c", "c1", "d"], 2),
            ("coalescing into a full pool evicts nothing",
                &[(Log, "", "l1"), (Progress, "j1", "a"), (Log, "", "l2"), (Progress, "j1", "b")],
                &[(3, "coalesced a")], &["l1", "b", "l2"], 0),
            ("results are outside the pool",
                &[(Log, "", "l1"), (Log, "", "l2"), (Log, "", "l3"), (Result, "j1", "r1"), (Result, "j2", "r2")],
                &[], &["l1", "l2", "l3", "r1", "r2"], 0),
            ("a result past the hard cap is handed back",
                &[(Result, "j1", "r1"), (Result, "j2", "r2"), (Result, "j3", "r3")],
                &[(2, "results-full r3")], &["r1", "r2"], 0),
        ];
        for &(name, pushes, unusual, popped, dropped) in cases {
            let mut queue = OutQueue::new(SMALL);
            let got = push_all(&mut queue, pushes);
            let mut expected = vec!["queued".to_string(); pushes.len()];
            for &(idx, outcome) in unusual {
                expected[idx] = outcome.to_string();
            }
            assert_eq!(got, expected, "{name}");
            assert_eq!(queue.len(), popped.len(), "{name}");
            assert_eq!(queue.dropped(), dropped, "{name}");
            assert_eq!(drain(&mut queue), popped, "{name}");
            assert!(queue.is_empty(), "{name}");
        }
    }

    #[test]
    fn counts_per_kind_and_stats() {
        let mut queue = OutQueue::new(SMALL);
        let _ = push_all(
            &mut queue,
            &[
                (Control, "", "c1"),
                (Progress, "j1", "p1"),
                (Progress, "j1", "p2"),
                (Result, "j1", "r1"),
                (Progress, "j1", "p3"),
                (Log, "", "l1"),
                (Log, "", "l2"),
                (Result, "j2", "r2"),
                (Result, "j3", "r3"),
            ],
        );
        let lens: Vec<usize> = [Control, Progress, Result, Log]
            .map(|kind| queue.len_of(kind))
            .to_vec();
        assert_eq!(lens, [1, 1, 2, 1]);
        assert_eq!(
            serde_json::to_value(queue.stats()).unwrap_or_default(),
            serde_json::json!({"len": 5, "control": 1, "progress": 1, "results": 2, "logs": 1,
                "dropped": 2, "coalesced": 1, "refused": 1})
        );
        assert_eq!(queue.front(), Some((Control, &"c1")));
        assert_eq!(queue.pop(), Some("c1"));
        assert_eq!(queue.front(), Some((Progress, &"p2")));
    }

    #[test]
    fn progress_after_the_result_was_sent_is_queued_again() {
        // The queue only knows what it holds (documented); the agent stops progress of settled jobs.
        let mut queue = OutQueue::new(SMALL);
        assert_eq!(push_all(&mut queue, &[(Result, "j1", "r1")]), ["queued"]);
        assert_eq!(queue.pop(), Some("r1"));
        assert_eq!(push_all(&mut queue, &[(Progress, "j1", "p1")]), ["queued"]);
        // Two results of one job: progress stays stale until both are sent.
        let mut queue = OutQueue::new(SMALL);
        let _ = push_all(&mut queue, &[(Result, "j1", "a"), (Result, "j1", "b")]);
        assert_eq!(queue.pop(), Some("a"));
        assert_eq!(
            push_all(&mut queue, &[(Progress, "j1", "p")]),
            ["dropped-stale p"]
        );
        assert_eq!(queue.pop(), Some("b"));
        assert_eq!(push_all(&mut queue, &[(Progress, "j1", "p")]), ["queued"]);
    }

    #[test]
    fn zero_lossy_capacity_queues_only_results() {
        let mut queue = OutQueue::new(OutQueueLimits {
            max_lossy: 0,
            max_results: 10,
        });
        let got = push_all(
            &mut queue,
            &[
                (Log, "", "l1"),
                (Control, "", "c1"),
                (Progress, "j", "p1"),
                (Result, "j", "r1"),
            ],
        );
        assert_eq!(
            got,
            [
                "dropped-full l1",
                "dropped-full c1",
                "dropped-full p1",
                "queued"
            ]
        );
        assert_eq!(drain(&mut queue), ["r1"]);
    }

    #[test]
    fn results_survive_a_flood_of_logs_in_order() {
        let mut queue: OutQueue<String> = OutQueue::default();
        for n in 0..100_000u32 {
            if n % 20_000 == 10_000 {
                let outcome = queue.push(Result, Some(&format!("job-{n}")), format!("result-{n}"));
                assert_eq!(outcome, PushOutcome::Queued);
            }
            let outcome = queue.push(Log, None, format!("log-{n}"));
            assert!(outcome.is_queued(), "a new log evicts an older one");
        }
        assert_eq!((queue.len_of(Result), queue.len_of(Log)), (5, 1_000));
        assert_eq!(queue.dropped(), 99_000);
        let popped: Vec<String> = std::iter::from_fn(|| queue.pop()).collect();
        let results: Vec<&str> = popped
            .iter()
            .filter(|s| s.starts_with("result-"))
            .map(String::as_str)
            .collect();
        assert_eq!(
            results,
            [
                "result-10000",
                "result-30000",
                "result-50000",
                "result-70000",
                "result-90000"
            ]
        );
        let logs: Vec<&str> = popped
            .iter()
            .filter(|s| s.starts_with("log-"))
            .map(String::as_str)
            .collect();
        let newest: Vec<String> = (99_000..100_000).map(|n| format!("log-{n}")).collect();
        assert_eq!(logs, newest, "the newest 1,000 logs, in order");
    }
}
