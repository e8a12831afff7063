//! `MetricsCollector`: job and node timings, success and failure rates, top errors, queue depths
//! and process resources — what heartbeats carry (`metrics.summary`), `/metrics` exposes in the
//! Prometheus text format, and `status` shows.
//!
//! Owned by the agent (one writer, no lock). Workers do not touch it: each run tallies its node
//! executions locally ([`NodeTally`]) and the tally travels with the job's end, so a 10,000-node
//! loop costs the collector one merge, not 10,000 events. Unlike upstream's, concurrent jobs do
//! not overwrite each other (jobs are keyed by id) and node statistics are actually recorded.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::Instant;

/// Finished jobs kept for `recent_jobs`.
const RECENT_JOBS: usize = 1000;
/// Distinct error texts counted (the rest are counted as "other").
const ERROR_KINDS: usize = 200;

/// How a job ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEnd {
    /// Completed.
    Succeeded,
    /// Failed (including timeouts and invalid workflows).
    Failed,
    /// Cancelled (by the orchestrator or a lost lease).
    Cancelled,
}

/// Per node type: executions, outcomes, time, retries.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeStats {
    /// Executions (successful or failed attempts).
    pub executions: u64,
    /// Successful executions.
    pub successful: u64,
    /// Failed attempts (a retried failure counts once per attempt).
    pub failed: u64,
    /// Retries scheduled after a failure.
    pub retries: u64,
    /// Total time in this node type, milliseconds.
    pub total_duration_ms: f64,
}

impl NodeStats {
    fn merge(&mut self, other: &NodeStats) {
        self.executions += other.executions;
        self.successful += other.successful;
        self.failed += other.failed;
        self.retries += other.retries;
        self.total_duration_ms += other.total_duration_ms;
    }
}

/// One run's node statistics, by node type (built by the worker, merged at the job's end).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeTally(pub HashMap<String, NodeStats>);

impl NodeTally {
    /// Record one node execution.
    pub fn record(&mut self, node_type: &str, duration_ms: f64, success: bool, retried: bool) {
        let s = match self.0.get_mut(node_type) {
            Some(s) => s,
            None => self.0.entry(node_type.to_string()).or_default(),
        };
        s.executions += 1;
        if success {
            s.successful += 1;
        } else {
            s.failed += 1;
        }
        if retried {
            s.retries += 1;
        }
        s.total_duration_ms += duration_ms;
    }
}

/// A finished job, for `recent_jobs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobRecordMetrics {
    /// Job id.
    pub job_id: String,
    /// How it ended.
    pub end: JobEnd,
    /// Wall time, milliseconds.
    pub duration_ms: f64,
    /// Node executions.
    pub node_executions: u64,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// Resource figures sampled by the agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Resources {
    /// This process's CPU use since the previous sample, percent of one core.
    pub process_cpu_percent: f64,
    /// This process's resident memory, MB.
    pub process_memory_mb: f64,
    /// System CPU use, percent.
    pub system_cpu_percent: f64,
    /// System memory in use, percent.
    pub system_memory_percent: f64,
}

/// Queue depths, given by the agent when a summary is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Queues {
    /// Jobs running.
    pub running: usize,
    /// Jobs recorded and waiting for a worker.
    pub waiting: usize,
    /// Outbox entries not yet delivered.
    pub outbox: usize,
    /// Control messages queued in memory.
    pub control: usize,
}

/// The collector.
#[derive(Debug)]
pub struct MetricsCollector {
    started: Instant,
    running: HashMap<String, Instant>,
    total: u64,
    succeeded: u64,
    failed: u64,
    cancelled: u64,
    total_duration_ms: f64,
    node_executions: u64,
    nodes: HashMap<String, NodeStats>,
    errors: HashMap<String, u64>,
    recent: VecDeque<JobRecordMetrics>,
    resources: Resources,
}

impl Default for MetricsCollector {
    fn default() -> Self {
        MetricsCollector::new()
    }
}

impl MetricsCollector {
    /// An empty collector.
    pub fn new() -> MetricsCollector {
        MetricsCollector {
            started: Instant::now(),
            running: HashMap::new(),
            total: 0,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            total_duration_ms: 0.0,
            node_executions: 0,
            nodes: HashMap::new(),
            errors: HashMap::new(),
            recent: VecDeque::new(),
            resources: Resources::default(),
        }
    }

    /// A job started running.
    pub fn record_job_start(&mut self, job_id: &str) {
        self.running.insert(job_id.to_string(), Instant::now());
    }

    /// A job ended; `duration_ms` is its execution time (when None, the time since its start).
    pub fn record_job_end(
        &mut self,
        job_id: &str,
        end: JobEnd,
        duration_ms: Option<f64>,
        error: Option<&str>,
        nodes: Option<&NodeTally>,
    ) {
        let started = self.running.remove(job_id);
        let duration_ms = duration_ms
            .or_else(|| started.map(|t| t.elapsed().as_secs_f64() * 1000.0))
            .unwrap_or(0.0);
        self.total += 1;
        match end {
            JobEnd::Succeeded => self.succeeded += 1,
            JobEnd::Failed => self.failed += 1,
            JobEnd::Cancelled => self.cancelled += 1,
        }
        self.total_duration_ms += duration_ms;
        let mut node_executions = 0;
        if let Some(tally) = nodes {
            for (ty, stats) in &tally.0 {
                node_executions += stats.executions;
                self.nodes.entry(ty.clone()).or_default().merge(stats);
            }
        }
        self.node_executions += node_executions;
        if let Some(e) = error {
            let key: String = e.chars().take(100).collect();
            if self.errors.len() < ERROR_KINDS || self.errors.contains_key(&key) {
                *self.errors.entry(key).or_default() += 1;
            } else {
                *self.errors.entry("other".into()).or_default() += 1;
            }
        }
        self.recent.push_back(JobRecordMetrics {
            job_id: job_id.to_string(),
            end,
            duration_ms,
            node_executions,
            error: error.map(|e| e.chars().take(500).collect()),
        });
        while self.recent.len() > RECENT_JOBS {
            self.recent.pop_front();
        }
    }

    /// Record one node execution directly (workers use a [`NodeTally`] instead).
    pub fn record_node_execution(
        &mut self,
        node_type: &str,
        duration_ms: f64,
        success: bool,
        retried: bool,
    ) {
        let mut tally = NodeTally::default();
        tally.record(node_type, duration_ms, success, retried);
        for (ty, stats) in tally.0 {
            self.node_executions += stats.executions;
            self.nodes.entry(ty).or_default().merge(&stats);
        }
    }

    /// The latest resource sample.
    pub fn set_resources(&mut self, resources: Resources) {
        self.resources = resources;
    }

    /// Jobs started and not ended.
    pub fn running_jobs(&self) -> usize {
        self.running.len()
    }

    /// Statistics of one node type.
    pub fn node_stats(&self, node_type: &str) -> Option<&NodeStats> {
        self.nodes.get(node_type)
    }

    /// The summary that travels in heartbeats and status.
    pub fn get_summary(&self, queues: Queues) -> serde_json::Value {
        let finished = self.succeeded + self.failed;
        let rate = if finished == 0 {
            100.0
        } else {
            (self.succeeded as f64 * 10_000.0 / finished as f64).round() / 100.0
        };
        let average = if self.total == 0 {
            0.0
        } else {
            (self.total_duration_ms / self.total as f64).round()
        };
        let mut current: Vec<&String> = self.running.keys().collect();
        current.sort();
        serde_json::json!({
            "total_jobs": self.total,
            "successful_jobs": self.succeeded,
            "failed_jobs": self.failed,
            "cancelled_jobs": self.cancelled,
            "success_rate_percent": rate,
            "average_duration_ms": average,
            "total_duration_ms": self.total_duration_ms.round(),
            "current_jobs": current,
            "node_executions": self.node_executions,
            "queues": queues,
            "resources": self.resources,
            "uptime_seconds": self.started.elapsed().as_secs(),
        })
    }

    /// The full report: summary, node statistics, top errors, recent jobs.
    pub fn get_full_report(&self, queues: Queues) -> serde_json::Value {
        let mut top: Vec<(&String, &u64)> = self.errors.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        serde_json::json!({
            "summary": self.get_summary(queues),
            "node_stats": self.nodes,
            "top_errors": top.iter().take(10).map(|(e, n)| serde_json::json!({"error": e, "count": n})).collect::<Vec<_>>(),
            "recent_jobs": self.recent.iter().rev().take(20).collect::<Vec<_>>(),
        })
    }

    /// The Prometheus text exposition (`/metrics`). `extra` adds gauges the agent knows
    /// (name without prefix, help, value).
    pub fn prometheus(&self, queues: Queues, extra: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP casare_robot_{name} {help}");
            let _ = writeln!(out, "# TYPE casare_robot_{name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "casare_robot_{name}{labels} {value}");
            }
        };
        metric(
            "jobs_total",
            "counter",
            "Jobs that ended, by result.",
            &[
                ("{result=\"succeeded\"}".into(), self.succeeded as f64),
                ("{result=\"failed\"}".into(), self.failed as f64),
                ("{result=\"cancelled\"}".into(), self.cancelled as f64),
            ],
        );
        metric(
            "job_duration_milliseconds_sum",
            "counter",
            "Total execution time of ended jobs.",
            &[(String::new(), self.total_duration_ms.round())],
        );
        metric(
            "jobs_running",
            "gauge",
            "Jobs running now.",
            &[(String::new(), queues.running as f64)],
        );
        metric(
            "jobs_waiting",
            "gauge",
            "Jobs recorded and waiting for a worker.",
            &[(String::new(), queues.waiting as f64)],
        );
        metric(
            "outbox_entries",
            "gauge",
            "Reports not yet delivered to the orchestrator.",
            &[(String::new(), queues.outbox as f64)],
        );
        let mut types: Vec<&String> = self.nodes.keys().collect();
        types.sort();
        let per_type = |f: fn(&NodeStats) -> f64| -> Vec<(String, f64)> {
            types
                .iter()
                .map(|t| {
                    (
                        format!("{{node_type=\"{}\"}}", escape_label(t)),
                        f(&self.nodes[*t]),
                    )
                })
                .collect()
        };
        metric(
            "node_executions_total",
            "counter",
            "Node executions, by node type.",
            &per_type(|s| s.executions as f64),
        );
        metric(
            "node_failures_total",
            "counter",
            "Failed node attempts, by node type.",
            &per_type(|s| s.failed as f64),
        );
        metric(
            "node_duration_milliseconds_sum",
            "counter",
            "Time spent in nodes, by node type.",
            &per_type(|s| s.total_duration_ms.round()),
        );
        metric(
            "process_resident_memory_megabytes",
            "gauge",
            "Resident memory of the robot process.",
            &[(String::new(), self.resources.process_memory_mb)],
        );
        metric(
            "process_cpu_percent",
            "gauge",
            "CPU use of the robot process, percent of one core.",
            &[(String::new(), self.resources.process_cpu_percent)],
        );
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the robot started.",
            &[(String::new(), self.started.elapsed().as_secs() as f64)],
        );
        for (name, help, value) in extra {
            metric(name, "gauge", help, &[(String::new(), *value)]);
        }
        out
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_and_nodes_add_up_across_concurrent_jobs() {
        let mut m = MetricsCollector::new();
        m.record_job_start("a");
        m.record_job_start("b");
        assert_eq!(m.running_jobs(), 2);
        let mut tally = NodeTally::default();
        tally.record("LogNode", 2.0, true, false);
        tally.record("LogNode", 4.0, true, false);
        tally.record("HttpRequestNode", 10.0, false, true);
        tally.record("HttpRequestNode", 12.0, true, false);
        m.record_job_end("a", JobEnd::Succeeded, Some(100.0), None, Some(&tally));
        m.record_job_end(
            "b",
            JobEnd::Failed,
            Some(300.0),
            Some("n1 (LogNode): boom"),
            None,
        );
        m.record_job_start("c");
        m.record_job_end("c", JobEnd::Cancelled, Some(0.0), None, None);
        let s = m.get_summary(Queues {
            running: 0,
            waiting: 1,
            outbox: 2,
            control: 0,
        });
        assert_eq!(s["total_jobs"], 3);
        assert_eq!(s["successful_jobs"], 1);
        assert_eq!(s["failed_jobs"], 1);
        assert_eq!(s["cancelled_jobs"], 1);
        assert_eq!(s["success_rate_percent"], 50.0);
        assert_eq!(s["average_duration_ms"], 133.0);
        assert_eq!(s["node_executions"], 4);
        assert_eq!(s["queues"]["outbox"], 2);
        assert_eq!(s["current_jobs"], serde_json::json!([]));
        let http = m.node_stats("HttpRequestNode").unwrap();
        assert_eq!(
            (http.executions, http.successful, http.failed, http.retries),
            (2, 1, 1, 1)
        );
        assert_eq!(http.total_duration_ms, 22.0);
        let full = m.get_full_report(Queues::default());
        assert_eq!(full["top_errors"][0]["error"], "n1 (LogNode): boom");
        assert_eq!(full["recent_jobs"][0]["job_id"], "c");
    }

    #[test]
    fn an_empty_collector_reports_a_full_success_rate_and_no_average() {
        let m = MetricsCollector::new();
        let s = m.get_summary(Queues::default());
        assert_eq!(s["success_rate_percent"], 100.0);
        assert_eq!(s["average_duration_ms"], 0.0);
    }

    #[test]
    fn the_prometheus_text_has_help_type_and_labelled_samples() {
        let mut m = MetricsCollector::new();
        m.record_node_execution("Weird\"Node", 1.5, true, false);
        m.record_job_start("a");
        m.record_job_end("a", JobEnd::Succeeded, Some(10.0), None, None);
        let text = m.prometheus(
            Queues {
                running: 1,
                ..Queues::default()
            },
            &[("link_up", "1 when a link to the orchestrator is up.", 1.0)],
        );
        assert!(
            text.contains("# TYPE casare_robot_jobs_total counter"),
            "{text}"
        );
        assert!(
            text.contains("casare_robot_jobs_total{result=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(text.contains("casare_robot_jobs_running 1"), "{text}");
        assert!(
            text.contains("casare_robot_node_executions_total{node_type=\"Weird\\\"Node\"} 1"),
            "{text}"
        );
        assert!(text.contains("casare_robot_link_up 1"), "{text}");
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut m = MetricsCollector::new();
        for i in 0..(ERROR_KINDS + 50) {
            let id = format!("j{i}");
            m.record_job_start(&id);
            m.record_job_end(
                &id,
                JobEnd::Failed,
                Some(1.0),
                Some(&format!("error {i}")),
                None,
            );
        }
        assert!(m.errors.len() <= ERROR_KINDS + 1);
        assert_eq!(m.errors["other"], 50);
    }
}
