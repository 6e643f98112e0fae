//! The failover side of a cluster's monitor task: each round goes through the controller, its
//! fences reach the published topology, promotions and switchovers run in the background, and
//! operator commands (switchover, fence, unfence) arrive through a [`FailoverHandle`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::actions::{ActionError, Actions};
use super::decide::{Controller, Note, PromoteOutcome, Step};
use super::gate::{Closed, WriteGate};
use super::run::{self, SwitchoverReport};
use crate::config::ClusterConfig;
use crate::metrics::Metrics;
use crate::topology::hysteresis::ClusterState;
use crate::topology::{Health, Role, ServerMode, Topology};

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// An operator request to the monitor of one cluster.
#[derive(Debug)]
pub enum Command {
    /// Planned switchover to `target` (a server name), or to the best replica.
    Switchover {
        target: Option<String>,
        reply: Reply<SwitchoverReport>,
    },
    /// Fence (`fenced: true`) or unfence a server by name.
    Fence {
        server: String,
        fenced: bool,
        reply: Reply<()>,
    },
    /// Drain, put in maintenance, or enable a replica by name.
    SetMode {
        server: String,
        mode: ServerMode,
        reply: Reply<()>,
    },
    /// A reload: new settings and server slots. Handled by the monitor (it owns the probers).
    Reconfigure {
        update: Box<Reconfigure>,
        reply: Reply<()>,
    },
}

/// What a reload hands a cluster's monitor (see `ClusterState::reconfigure`).
#[derive(Debug, Clone)]
pub struct Reconfigure {
    /// The merged config: `servers` are the slots (old ones in place, new ones appended).
    pub cluster: Arc<ClusterConfig>,
    /// Slot whose server is new at that index, added back, or moved to another address.
    pub reset: Vec<bool>,
    /// Slot whose server left the configuration.
    pub removed: Vec<bool>,
}

/// Sends operator commands to one cluster's failover driver.
#[derive(Debug, Clone)]
pub struct FailoverHandle {
    tx: mpsc::Sender<Command>,
}

impl FailoverHandle {
    /// Run a switchover; answers when writes are released (or the switchover was refused/aborted).
    pub async fn switchover(&self, target: Option<String>) -> Result<SwitchoverReport, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Switchover { target, reply }, rx).await
    }

    pub async fn fence(&self, server: String, fenced: bool) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.send(
            Command::Fence {
                server,
                fenced,
                reply,
            },
            rx,
        )
        .await
    }

    pub async fn set_mode(&self, server: String, mode: ServerMode) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.send(
            Command::SetMode {
                server,
                mode,
                reply,
            },
            rx,
        )
        .await
    }

    /// Apply a reload (answers once the monitor has published the new topology).
    pub async fn reconfigure(&self, update: Reconfigure) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        let update = Box::new(update);
        self.send(Command::Reconfigure { update, reply }, rx).await
    }

    async fn send<T>(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<T, String>>,
    ) -> Result<T, String> {
        self.tx
            .send(cmd)
            .await
            .map_err(|_| "the cluster's monitor is not running".to_string())?;
        rx.await
            .map_err(|_| "the cluster's monitor stopped before answering".to_string())?
    }
}

/// Background work that finished.
#[derive(Debug)]
pub enum Done {
    Promoted {
        outcome: PromoteOutcome,
        took: Duration,
    },
    Switched {
        report: SwitchoverReport,
        closed: Option<Closed>,
        reply: Reply<SwitchoverReport>,
    },
    ActiveFence {
        server: usize,
        result: Result<(), ActionError>,
    },
}

/// What woke the monitor besides its ticker.
#[derive(Debug)]
pub enum Wake {
    Done(Done),
    Command(Command),
}

/// A finished switchover whose gate stays closed until the new primary is published.
#[derive(Debug)]
struct Release {
    closed: Closed,
    target: usize,
    until: Instant,
    reply: Reply<SwitchoverReport>,
    report: SwitchoverReport,
    started: Instant,
}

/// The failover state of one cluster, owned by its monitor task.
pub struct Driver<A: Actions> {
    cluster: Arc<ClusterConfig>,
    actions: Arc<A>,
    gate: WriteGate,
    controller: Controller,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    cmd_rx: mpsc::Receiver<Command>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    release: Option<Release>,
}

impl<A: Actions> Driver<A> {
    pub fn new(
        cluster: &ClusterConfig,
        actions: Arc<A>,
        gate: WriteGate,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
    ) -> (Self, FailoverHandle) {
        let (tx, cmd_rx) = mpsc::channel(16);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            cluster: Arc::new(cluster.clone()),
            actions,
            gate,
            controller: Controller::new(cluster),
            metrics,
            tracker,
            cmd_rx,
            done_tx,
            done_rx,
            release: None,
        };
        (driver, FailoverHandle { tx })
    }

    /// The next command or finished background step (pending forever when there is none).
    pub async fn next(&mut self) -> Wake {
        tokio::select! {
            Some(d) = self.done_rx.recv() => Wake::Done(d),
            Some(c) = self.cmd_rx.recv() => Wake::Command(c),
            else => std::future::pending().await,
        }
    }

    /// Handle a wake-up; returns true when a probe round should run at once.
    pub fn on_wake(&mut self, wake: Wake, state: &mut ClusterState, now: Instant) -> bool {
        match wake {
            Wake::Command(c) => {
                self.on_command(c, state);
                false
            }
            Wake::Done(Done::Promoted { outcome, took }) => {
                let c = &self.cluster.name;
                match outcome.promoted {
                    Some(_) => {
                        self.metrics.failover_event(c, "promoted");
                        self.metrics.failover_duration(c, "failover", took);
                    }
                    None => self.metrics.failover_event(c, "promotion_failed"),
                }
                if let Some(e) = &outcome.error {
                    tracing::error!(cluster = %c, error = %e, "failover: not everything worked");
                }
                let steps = self.controller.on_promoted(&outcome, now);
                self.apply(steps, state);
                true
            }
            Wake::Done(Done::Switched {
                report,
                closed,
                reply,
            }) => {
                let steps = self
                    .controller
                    .end_switchover(report.new, report.old_rejoined);
                self.apply(steps, state);
                match (closed, report.new) {
                    (Some(closed), Some(target)) => {
                        self.metrics
                            .failover_event(&self.cluster.name, "switchover");
                        self.release = Some(Release {
                            closed,
                            target,
                            until: now + self.cluster.failover.promote_timeout,
                            started: now.checked_sub(report.took).unwrap_or(now),
                            reply,
                            report,
                        });
                    }
                    _ => {
                        self.metrics
                            .failover_event(&self.cluster.name, "switchover_failed");
                        let _ = reply.send(Err(report
                            .error
                            .unwrap_or_else(|| "switchover aborted".into())));
                    }
                }
                true
            }
            Wake::Done(Done::ActiveFence { server, result }) => {
                let name = &self.cluster.servers[server].name;
                match result {
                    Ok(()) => {
                        tracing::warn!(cluster = %self.cluster.name, server = %name, "fenced former primary made read-only")
                    }
                    Err(e) => {
                        tracing::error!(cluster = %self.cluster.name, server = %name, error = %e, "could not make the fenced server read-only (the proxy still sends it nothing)")
                    }
                }
                false
            }
        }
    }

    /// A reload (the monitor already applied it to `state`): new config and actions. Background
    /// promotions or switchovers keep the config they started with; slot indices do not move.
    pub fn reconfigure(&mut self, cluster: Arc<ClusterConfig>, actions: Arc<A>, removed: &[bool]) {
        self.controller.reconfigure(&cluster, removed);
        self.cluster = cluster;
        self.actions = actions;
    }

    /// After each probe round: let the controller decide on the fresh snapshot.
    pub fn after_round(&mut self, state: &mut ClusterState, now: Instant) {
        let topo = state.snapshot();
        let steps = self.controller.on_round(&topo, now);
        self.apply(steps, state);
        state.set_phase(self.controller.phase());
        self.metrics
            .split_brain
            .with_label_values(&[self.cluster.name.as_str()])
            .set(i64::from(topo.split_brain()));
    }

    /// After publishing: reopen the gate of a finished switchover once the new primary shows.
    pub fn maybe_release(&mut self, topo: &Topology, now: Instant) {
        let ready = match &self.release {
            Some(r) => topo.primary().map(|p| p.index) == Some(r.target) || now >= r.until,
            None => false,
        };
        if !ready {
            return;
        }
        if let Some(r) = self.release.take() {
            drop(r.closed);
            let took = now.saturating_duration_since(r.started);
            self.metrics
                .failover_duration(&self.cluster.name, "switchover", took);
            let mut report = r.report;
            report.took = took;
            let _ = r.reply.send(Ok(report));
        }
    }

    fn on_command(&mut self, cmd: Command, state: &mut ClusterState) {
        let topo = state.snapshot();
        let find = |name: &str| {
            self.cluster
                .servers
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| format!("no server named {name:?} in cluster {}", self.cluster.name))
        };
        match cmd {
            Command::Fence {
                server,
                fenced,
                reply,
            } => {
                let r = find(&server).map(|i| {
                    let steps = self.controller.operator_fence(i, fenced);
                    self.apply(steps, state);
                    state.set_phase(self.controller.phase());
                });
                let _ = reply.send(r);
            }
            Command::SetMode {
                server,
                mode,
                reply,
            } => {
                let r = find(&server).and_then(|i| {
                    let is_primary = topo.primary().is_some_and(|p| p.index == i)
                        || self.controller.known_primary() == Some(i);
                    if is_primary && mode != ServerMode::Enabled {
                        return Err(format!(
                            "{server} is the primary: switch over first (POST /api/clusters/{}/switchover)",
                            self.cluster.name
                        ));
                    }
                    if state.set_mode(i, mode) {
                        tracing::warn!(cluster = %self.cluster.name, server = %server, mode = mode.as_str(), "server mode set by an operator");
                    }
                    Ok(())
                });
                let _ = reply.send(r);
            }
            Command::Reconfigure { reply, .. } => {
                // The monitor handles reloads itself (it owns the probers).
                let _ = reply.send(Err("reconfigure reached the failover driver".into()));
            }
            Command::Switchover { target, reply } => {
                let target = match target.as_deref().map(find).transpose() {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let (old, candidates) = match self.controller.begin_switchover(&topo, target) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                state.set_phase(self.controller.phase());
                let others = replicas(&topo, old);
                let (actions, cluster, gate, done) = (
                    self.actions.clone(),
                    self.cluster.clone(),
                    self.gate.clone(),
                    self.done_tx.clone(),
                );
                self.tracker.spawn(async move {
                    let (report, closed) =
                        run::switchover(actions, cluster, gate, old, candidates, others).await;
                    let _ = done.send(Done::Switched {
                        report,
                        closed,
                        reply,
                    });
                });
            }
        }
    }

    fn apply(&mut self, steps: Vec<Step>, state: &mut ClusterState) {
        let c = self.cluster.name.as_str();
        let name = |i: usize| self.cluster.servers[i].name.as_str();
        for step in steps {
            match step {
                Step::Fence { server, reason } => {
                    tracing::warn!(
                        cluster = c,
                        server = name(server),
                        reason,
                        "server fenced: no reads, no writes"
                    );
                    state.set_fenced(server, true);
                    self.metrics.failover_event(c, "fenced");
                }
                Step::Unfence { server, reason } => {
                    tracing::warn!(
                        cluster = c,
                        server = name(server),
                        reason,
                        "server unfenced"
                    );
                    state.set_fenced(server, false);
                    self.metrics.failover_event(c, "unfenced");
                }
                Step::ActiveFence { server } => {
                    tracing::warn!(
                        cluster = c,
                        server = name(server),
                        "fenced server is up and claims the primary role: making it read-only"
                    );
                    self.metrics.failover_event(c, "active_fence");
                    let (a, done) = (self.actions.clone(), self.done_tx.clone());
                    self.tracker.spawn(async move {
                        let result = a.fence(server).await;
                        let _ = done.send(Done::ActiveFence { server, result });
                    });
                }
                Step::Promote {
                    failed,
                    candidates,
                    others,
                } => {
                    let (a, cl, done) = (
                        self.actions.clone(),
                        self.cluster.clone(),
                        self.done_tx.clone(),
                    );
                    self.tracker.spawn(async move {
                        let started = Instant::now();
                        let outcome = run::promote(a, cl, failed, candidates, others).await;
                        let took = started.elapsed();
                        let _ = done.send(Done::Promoted { outcome, took });
                    });
                }
                Step::Followed { from, to } => {
                    let from = from.map(name).unwrap_or("none");
                    tracing::warn!(cluster = c, from, to = name(to), "following a new primary");
                    if from != "none" {
                        self.metrics.failover_event(c, "followed");
                    }
                }
                Step::Note(note) => self.note(&note),
            }
        }
    }

    fn note(&self, note: &Note) {
        let c = self.cluster.name.as_str();
        let name = |i: usize| self.cluster.servers[i].name.as_str();
        let mode = self.controller.mode().as_str();
        match note {
            Note::SplitBrain(servers) => {
                let names: Vec<&str> = servers.iter().map(|&i| name(i)).collect();
                tracing::error!(cluster = c, servers = ?names, "two writers: sending writes to none of them until one steps down or is fenced");
                self.metrics.failover_event(c, "split_brain");
            }
            Note::SplitBrainOver => {
                tracing::warn!(cluster = c, "split brain over: at most one writer again")
            }
            Note::UnreachableButReplicated(p) => {
                tracing::warn!(cluster = c, server = name(*p), "primary unreachable from the proxy, but replicas still stream from it: not failing over");
                self.metrics.failover_event(c, "primary_unreachable");
            }
            Note::PrimaryFailed(p) => {
                tracing::error!(
                    cluster = c,
                    server = name(*p),
                    mode,
                    "primary failed (probes and replicas agree)"
                );
                self.metrics.failover_event(c, "primary_failed");
            }
            Note::NoCandidate(p) => {
                tracing::error!(
                    cluster = c,
                    server = name(*p),
                    "primary down and no replica can take over"
                );
                self.metrics.failover_event(c, "no_candidate");
            }
        }
    }
}

/// Up, unfenced replicas other than `except`.
fn replicas(topo: &Topology, except: usize) -> Vec<usize> {
    topo.servers
        .iter()
        .filter(|s| {
            s.index != except && s.health == Health::Up && s.role == Role::Replica && !s.fenced
        })
        .map(|s| s.index)
        .collect()
}
