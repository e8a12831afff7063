//! Run resources: the per-run registry of live objects that span nodes (a database connection
//! and its transaction today; browsers, sessions, workbooks and child processes later).
//!
//! Lifecycle:
//! - **open**: a node hands a [`Resource`] to [`Resources::open`] and gets a [`Handle`] value
//!   back, which it puts on an output port. The handle travels like any value (data edges,
//!   variables, `{{node.port}}`) but prints, serialises and checkpoints only as its label,
//!   `<Database main>`, never as its contents.
//! - **share**: a node that receives a handle reaches the live object with [`Resources::with`];
//!   every entry sits behind its own lock, and the registry is `Send + Sync`, so sub-workflows
//!   and parallel branches of the same run can share it.
//! - **close**: a node may close one early ([`Resources::close`]); using the handle afterwards
//!   is a node error naming the node that closed it. When the run ends, for any reason
//!   (completed, failed, cancelled, timed out, a panic unwinding through the runner), every
//!   resource still open is closed in reverse order of opening ([`CloseAtEnd`] is the drop
//!   guard). Closing errors are logged as warnings naming the resource, never fatal.
//! - **rewind**: a live resource cannot survive a crash. [`Resources::open_records`] lists what
//!   is open (kind, name, opener) for the checkpoint; `store::checkpoint` keeps the state from
//!   before the first opener of the current span and resumes from there.

use super::node::{NodeCtx, NodeError};
use super::value::Value;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A live object owned by a run.
pub trait Resource: Send + Any {
    /// What it is, capitalised as its label prints (`Database`, `Browser`).
    fn kind(&self) -> &'static str;
    /// Release it. `Ok(Some(note))` is a remark worth logging (e.g. a transaction rolled back).
    fn close(&mut self, why: CloseReason) -> Result<Option<String>, String>;
    /// For downcasting to the concrete type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Why a resource is being closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// A node closed it (a disconnect node).
    ByNode,
    /// The run ended with it still open.
    RunEnded,
}

/// A reference to a resource: the value that travels between nodes.
#[derive(Debug, PartialEq, Eq)]
pub struct Handle {
    /// Registry-wide id (unique within the run).
    pub id: u64,
    /// The resource's kind (`Database`).
    pub kind: &'static str,
    /// Its name (`main`, a connection or tab name).
    pub name: Arc<str>,
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} {}>", self.kind, self.name)
    }
}

/// A resource open at a checkpoint: what `checkpoints show` lists and what a resume rewinds for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRecord {
    /// Kind (`Database`).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Id of the node that opened it.
    pub opener: String,
    /// Index of that node in the workflow.
    pub opener_idx: usize,
}

type Slot = Arc<Mutex<Box<dyn Resource>>>;

struct Entry {
    handle: Arc<Handle>,
    opener: String,
    opener_idx: usize,
    /// The live object; `None` once closed.
    slot: Option<Slot>,
    /// Who closed it (node id), or that the run ended.
    closed_by: Option<String>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    entries: Vec<Entry>,
    n_open: usize,
}

/// The registry of one run's live resources.
#[derive(Default)]
pub struct Resources {
    inner: Mutex<Inner>,
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resources")
            .field("open", &self.open_records())
            .finish()
    }
}

// Sub-workflows and parallel branches share one registry across threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Resources>();
};

/// The "closed by" text of a run's end.
const RUN_ENDED: &str = "the end of the run";

impl Resources {
    /// Register `resource`, opened by node `opener` (index `opener_idx`), under `name`; the
    /// returned value is the handle to put on an output port.
    pub fn open(
        &self,
        opener: &str,
        opener_idx: usize,
        name: &str,
        resource: Box<dyn Resource>,
    ) -> Value {
        let mut inner = self.inner.lock();
        inner.next_id += 1;
        let handle = Arc::new(Handle {
            id: inner.next_id,
            kind: resource.kind(),
            name: Arc::from(name),
        });
        log::debug!("{handle} opened by node {opener}");
        inner.entries.push(Entry {
            handle: handle.clone(),
            opener: opener.to_string(),
            opener_idx,
            slot: Some(Arc::new(Mutex::new(resource))),
            closed_by: None,
        });
        inner.n_open += 1;
        Value::Handle(handle)
    }

    /// Number of resources open now.
    pub fn n_open(&self) -> usize {
        self.inner.lock().n_open
    }

    /// The resources open now, in order of opening.
    pub fn open_records(&self) -> Vec<OpenRecord> {
        let inner = self.inner.lock();
        if inner.n_open == 0 {
            return Vec::new();
        }
        inner
            .entries
            .iter()
            .filter(|e| e.slot.is_some())
            .map(|e| OpenRecord {
                kind: e.handle.kind.to_string(),
                name: e.handle.name.to_string(),
                opener: e.opener.clone(),
                opener_idx: e.opener_idx,
            })
            .collect()
    }

    fn slot(&self, handle: &Handle) -> Result<Slot, NodeError> {
        let inner = self.inner.lock();
        let entry = inner
            .entries
            .iter()
            .find(|e| e.handle.id == handle.id && e.handle.kind == handle.kind)
            .ok_or_else(|| NodeError::value(format!("{handle} does not belong to this run")))?;
        match (&entry.slot, &entry.closed_by) {
            (Some(slot), _) => Ok(slot.clone()),
            (None, Some(by)) if by == RUN_ENDED => Err(NodeError::value(format!(
                "{handle} was closed at {RUN_ENDED}"
            ))),
            (None, by) => Err(NodeError::value(format!(
                "{handle} was closed by node {}",
                by.as_deref().unwrap_or("?")
            ))),
        }
    }

    /// Run `f` on the live object behind `handle`, which must be a `T`.
    pub fn with<T: Resource, R>(
        &self,
        handle: &Handle,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, NodeError> {
        let slot = self.slot(handle)?;
        let mut guard = slot.lock();
        let any = guard.as_any_mut();
        match any.downcast_mut::<T>() {
            Some(t) => Ok(f(t)),
            None => Err(NodeError::type_error(format!(
                "{handle} is not the kind of resource this node uses"
            ))),
        }
    }

    /// Close the resource behind `handle` now (a disconnect node `by_node`). A second close is
    /// the "was closed by" error; a failing close is the node's error.
    pub fn close(&self, handle: &Handle, by_node: &str) -> Result<Option<String>, NodeError> {
        let slot = {
            let mut inner = self.inner.lock();
            let taken = inner
                .entries
                .iter_mut()
                .find(|e| e.handle.id == handle.id && e.handle.kind == handle.kind)
                .and_then(|e| {
                    let slot = e.slot.take()?;
                    e.closed_by = Some(by_node.to_string());
                    Some(slot)
                });
            if taken.is_some() {
                inner.n_open -= 1;
            }
            taken
        };
        // Not open (closed before, or not of this run): the same error a use would get.
        let Some(slot) = slot else {
            return Err(self
                .slot(handle)
                .err()
                .unwrap_or_else(|| NodeError::value(format!("{handle} is not open"))));
        };
        let mut guard = slot.lock();
        guard
            .close(CloseReason::ByNode)
            .map_err(|e| NodeError::new("ConnectionError", format!("closing {handle}: {e}")))
    }

    /// Close everything still open, newest first, logging each closing error (as a warning
    /// naming the resource) and each note. Idempotent.
    pub fn close_all(&self) {
        let open: Vec<(Arc<Handle>, Slot)> = {
            let mut inner = self.inner.lock();
            inner.n_open = 0;
            inner
                .entries
                .iter_mut()
                .rev()
                .filter_map(|e| {
                    let slot = e.slot.take()?;
                    e.closed_by = Some(RUN_ENDED.to_string());
                    Some((e.handle.clone(), slot))
                })
                .collect()
        };
        for (handle, slot) in open {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                slot.lock().close(CloseReason::RunEnded)
            }));
            match result {
                Ok(Ok(None)) => log::debug!("{handle} closed at {RUN_ENDED}"),
                Ok(Ok(Some(note))) => log::info!("{handle} closed at {RUN_ENDED}: {note}"),
                Ok(Err(e)) => log::warn!("{handle}: closing it at {RUN_ENDED} failed: {e}"),
                Err(_) => log::warn!("{handle}: closing it at {RUN_ENDED} panicked"),
            }
        }
    }
}

/// The drop guard that closes a run's resources however the run ends (return or unwind).
pub struct CloseAtEnd(pub Arc<Resources>);

impl Drop for CloseAtEnd {
    fn drop(&mut self) {
        self.0.close_all();
    }
}

impl NodeCtx<'_> {
    /// The run's resource registry.
    pub fn resources(&self) -> &Arc<Resources> {
        &self.state.resources
    }

    /// Register `resource` opened by this node under `name`; returns the handle value.
    pub fn open_resource(&self, name: &str, resource: Box<dyn Resource>) -> Value {
        self.state
            .resources
            .open(self.node_id(), self.node_index(), name, resource)
    }

    /// The handle on input `name`, which must refer to a resource of `kind` (`what` names it
    /// for the error, e.g. "a database connection from DatabaseConnectNode").
    pub fn handle_param(
        &self,
        name: &str,
        kind: &str,
        what: &str,
    ) -> Result<Arc<Handle>, NodeError> {
        match self.param(name) {
            Value::Handle(h) if h.kind == kind => Ok(h),
            Value::Handle(h) => Err(NodeError::type_error(format!(
                "input '{name}' must be {what}, got {h}"
            ))),
            Value::Null => Err(NodeError::value(format!(
                "required input '{name}' has no value: connect it to {what}"
            ))),
            Value::Str(s) if s.starts_with(&format!("<{kind} ")) && s.ends_with('>') => {
                Err(NodeError::type_error(format!(
                    "input '{name}' must be {what}, got the text {s}: a handle's label, not the \
                     live resource (it was written out as text, or it came from before a restart)"
                )))
            }
            other => Err(super::node::bad_param(name, &other, what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource that records its closing in a shared log.
    pub(crate) struct Probe {
        pub(crate) name: &'static str,
        pub(crate) log: Arc<Mutex<Vec<String>>>,
        pub(crate) fail: bool,
    }

    impl Resource for Probe {
        fn kind(&self) -> &'static str {
            "Probe"
        }
        fn close(&mut self, why: CloseReason) -> Result<Option<String>, String> {
            self.log.lock().push(format!("{} {why:?}", self.name));
            if self.fail {
                return Err("boom".into());
            }
            Ok(None)
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
    }

    fn probe(name: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Box<dyn Resource> {
        Box::new(Probe {
            name,
            log: log.clone(),
            fail: false,
        })
    }

    #[test]
    fn close_all_closes_in_reverse_order_once_even_when_one_fails() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let reg = Resources::default();
        reg.open("n1", 1, "a", probe("a", &log));
        reg.open(
            "n2",
            2,
            "b",
            Box::new(Probe {
                name: "b",
                log: log.clone(),
                fail: true,
            }),
        );
        reg.open("n3", 3, "c", probe("c", &log));
        assert_eq!(reg.n_open(), 3);
        reg.close_all();
        reg.close_all();
        assert_eq!(
            *log.lock(),
            ["c RunEnded", "b RunEnded", "a RunEnded"],
            "newest first, a failing close does not stop the others, a second close_all is a no-op"
        );
        assert_eq!(reg.n_open(), 0);
    }

    #[test]
    fn a_closed_handle_names_who_closed_it() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let reg = Resources::default();
        let Value::Handle(h) = reg.open("opener", 0, "main", probe("a", &log)) else {
            panic!("open returns a handle")
        };
        assert!(reg.with::<Probe, _>(&h, |p| p.name).is_ok());
        reg.close(&h, "closer").unwrap();
        let err = reg.with::<Probe, _>(&h, |p| p.name).unwrap_err();
        assert_eq!(err.message, "<Probe main> was closed by node closer");
        let err = reg.close(&h, "again").unwrap_err();
        assert_eq!(err.message, "<Probe main> was closed by node closer");
        assert!(reg.open_records().is_empty());
        reg.close_all();
        assert_eq!(*log.lock(), ["a ByNode"], "closed once, by the node");
    }

    #[test]
    fn open_records_list_what_is_open_with_its_opener() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let reg = Resources::default();
        let Value::Handle(a) = reg.open("n1", 4, "a", probe("a", &log)) else {
            panic!()
        };
        reg.open("n2", 7, "b", probe("b", &log));
        reg.close(&a, "n3").unwrap();
        assert_eq!(
            reg.open_records(),
            [OpenRecord {
                kind: "Probe".into(),
                name: "b".into(),
                opener: "n2".into(),
                opener_idx: 7
            }]
        );
        reg.close_all();
        let err = reg.with::<Probe, _>(&a, |_| ()).unwrap_err();
        assert!(err.message.contains("closed by node n3"), "{}", err.message);
    }

    #[test]
    fn the_guard_closes_on_unwind() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let reg = Arc::new(Resources::default());
        let inner = reg.clone();
        let log2 = log.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = CloseAtEnd(inner.clone());
            inner.open("n1", 1, "a", probe("a", &log2));
            panic!("the runner died");
        }));
        assert!(result.is_err());
        assert_eq!(*log.lock(), ["a RunEnded"]);
        assert_eq!(reg.n_open(), 0);
    }

    /// Closings seen by [`opener`] resources, tagged by test case.
    static CLOSED: Mutex<Vec<String>> = parking_lot::const_mutex(Vec::new());

    /// A node that opens a probe named by its `message` config.
    fn opener(ctx: &mut NodeCtx<'_>) -> Result<super::super::Flow, NodeError> {
        let tag = ctx.param_str("message");
        struct Tagged(String);
        impl Resource for Tagged {
            fn kind(&self) -> &'static str {
                "Probe"
            }
            fn close(&mut self, _why: CloseReason) -> Result<Option<String>, String> {
                CLOSED.lock().push(self.0.clone());
                Ok(None)
            }
            fn as_any_mut(&mut self) -> &mut dyn Any {
                self
            }
        }
        let h = ctx.open_resource("p", Box::new(Tagged(tag)));
        ctx.set_output("handle", h);
        Ok(super::super::Flow::Next)
    }

    fn fails(_ctx: &mut NodeCtx<'_>) -> Result<super::super::Flow, NodeError> {
        Err(NodeError::value("fails on purpose"))
    }
    fn panics(_ctx: &mut NodeCtx<'_>) -> Result<super::super::Flow, NodeError> {
        panic!("a node bug")
    }
    fn cancels(ctx: &mut NodeCtx<'_>) -> Result<super::super::Flow, NodeError> {
        ctx.cancel_token().cancel("operator");
        Ok(super::super::Flow::Next)
    }
    fn sleeps(ctx: &mut NodeCtx<'_>) -> Result<super::super::Flow, NodeError> {
        ctx.sleep(std::time::Duration::from_secs(30))?;
        Ok(super::super::Flow::Next)
    }

    static OPENER: super::super::NodeDef =
        super::super::NodeDef::plain("LogNode", &[], &["handle"], opener);

    #[test]
    fn every_way_a_run_ends_closes_its_resources() {
        use super::super::node::NodeDef;
        use super::super::runner::{self, NoObserver, RunOptions, RunStatus};
        static FAILS: NodeDef = NodeDef::plain("LogNode", &[], &[], fails);
        static PANICS: NodeDef = NodeDef::plain("LogNode", &[], &[], panics);
        static CANCELS: NodeDef = NodeDef::plain("LogNode", &[], &[], cancels);
        static SLEEPS: NodeDef = NodeDef::plain("LogNode", &[], &[], sleeps);
        let cases: [(&str, Option<&'static NodeDef>, RunStatus); 5] = [
            ("completed", None, RunStatus::Completed),
            ("failed", Some(&FAILS), RunStatus::Failed),
            ("panicked", Some(&PANICS), RunStatus::Failed),
            ("cancelled", Some(&CANCELS), RunStatus::Cancelled),
            ("timed_out", Some(&SLEEPS), RunStatus::TimedOut),
        ];
        for (tag, end, status) in cases {
            let mut wf = crate::engine::load_str(&crate::nodes::testing::chain(&[
                ("open", "LogNode", serde_json::json!({"message": tag})),
                ("end", "LogNode", serde_json::json!({"message": "end"})),
            ]))
            .unwrap();
            let i = wf.index["open"];
            wf.nodes[i].def = &OPENER;
            if let Some(def) = end {
                let i = wf.index["end"];
                wf.nodes[i].def = def;
            }
            let opts = RunOptions {
                job_timeout: std::time::Duration::from_millis(if tag == "timed_out" {
                    300
                } else {
                    60_000
                }),
                ..RunOptions::default()
            };
            let out = runner::run(
                &wf,
                Default::default(),
                &opts,
                &crate::engine::CancelToken::new(),
                &mut NoObserver,
            );
            assert_eq!(out.status, status, "{tag}: {:?}", out.error);
            assert!(
                CLOSED.lock().iter().any(|t| t == tag),
                "{tag}: the resource was closed when the run ended"
            );
            assert_eq!(
                out.to_json()["node_outputs"]["open"]["handle"],
                "<Probe p>",
                "{tag}: the result holds only the label"
            );
        }
    }

    #[test]
    fn a_handle_prints_as_its_label_everywhere() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let reg = Resources::default();
        let h = reg.open("n1", 1, "main", probe("a", &log));
        let v = Value::dict_from([("connection", h.clone())]);
        assert_eq!(h.py_str(), "<Probe main>");
        assert_eq!(v.py_repr(), "{'connection': <Probe main>}");
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"connection":"<Probe main>"}"#
        );
        assert_eq!(v.to_json()["connection"], "<Probe main>");
        assert!(h.py_eq(&h.clone()));
        reg.close_all();
    }
}
