//! Hot reload: re-read and validate the config file, plan what changed, and apply it to the
//! running clusters without closing the sessions the change does not concern.
//!
//! `SIGHUP` and `POST /api/reload` both end in [`Reloader::reload`]: the file is loaded and
//! validated like at start-up (an invalid file is refused with every problem and nothing
//! changes), [`plan::plan`] works out what changed, and the changes are applied in place:
//! - servers added, removed, added back, moved or reweighted (the monitor starts probing new
//!   ones; removed ones get no new work, their pooled connections close, sessions inside a
//!   transaction there finish it); removing or moving the current primary is refused;
//! - routing and consistency settings (sessions that did not set their own follow), the
//!   classifier's write functions, monitor and failover settings, pool sizes and limits;
//! - users (new logins see them; sessions already in keep going), limits, the admin token,
//!   TLS certificates (new handshakes use them).
//!
//! Listen addresses, a cluster's protocol, and clusters added or removed need a restart: the
//! reload applies everything else and names those in its answer.

pub mod plan;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use crate::classify::{Classifier, ClassifierSettings, Dialect};
use crate::config::{Config, Protocol};
use crate::failover::driver::{FailoverHandle, Reconfigure};
use crate::frontend::cluster::ClusterCtx;
use crate::frontend::users::build_users;
use crate::metrics::Metrics;
use plan::{ClusterPlan, Plan};

/// How long a cluster's monitor may take to take a new configuration.
const MONITOR_DEADLINE: Duration = Duration::from_secs(10);

/// Why a reload changed nothing (or not everything).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no configuration file to reload (the proxy was started without --config)")]
    NoFile,
    #[error("invalid configuration, nothing changed:\n{0}")]
    Invalid(String),
    #[error("refused, nothing changed: {0}")]
    Refused(String),
    #[error("applied only in part: {0}")]
    Partial(String),
}

/// What a successful reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Changes applied, e.g. `main: server replica2 removed`.
    pub applied: Vec<String>,
    /// Changes in the file that only a restart applies (not applied).
    pub restart_needed: Vec<String>,
}

/// The running configuration as the last reload left it.
struct Live {
    /// Clusters' `servers` are slots (see [`plan`]).
    config: Config,
    /// Per cluster, which slots a reload removed.
    removed: HashMap<String, Vec<bool>>,
}

/// Applies reloads to the running clusters. One reload at a time.
pub struct Reloader {
    path: Option<PathBuf>,
    contexts: Vec<Arc<ClusterCtx>>,
    failover: Vec<(String, FailoverHandle)>,
    client_slots: Arc<Semaphore>,
    admin_token: Arc<ArcSwap<Option<String>>>,
    metrics: Arc<Metrics>,
    live: tokio::sync::Mutex<Live>,
}

/// The shared pieces a [`Reloader`] changes.
pub struct Parts {
    pub contexts: Vec<Arc<ClusterCtx>>,
    pub failover: Vec<(String, FailoverHandle)>,
    pub client_slots: Arc<Semaphore>,
    pub admin_token: Arc<ArcSwap<Option<String>>>,
    pub metrics: Arc<Metrics>,
}

impl Reloader {
    /// `path` is the file to re-read (`None`: reloads are refused); `running` what was started.
    pub fn new(path: Option<PathBuf>, running: Config, parts: Parts) -> Self {
        Reloader {
            path,
            contexts: parts.contexts,
            failover: parts.failover,
            client_slots: parts.client_slots,
            admin_token: parts.admin_token,
            metrics: parts.metrics,
            live: tokio::sync::Mutex::new(Live {
                config: running,
                removed: HashMap::new(),
            }),
        }
    }

    /// Re-read the file and apply what changed. Logs the outcome and counts it in
    /// `switchyard_config_reloads_total{result}`.
    pub async fn reload(&self) -> Result<Report, ReloadError> {
        let r = self.reload_inner().await;
        let result = match &r {
            Ok(report) => {
                for c in &report.applied {
                    tracing::info!(change = %c, "reload: applied");
                }
                for c in &report.restart_needed {
                    tracing::warn!(setting = %c, "reload: changed in the file, needs a restart (not applied)");
                }
                tracing::info!(
                    applied = report.applied.len(),
                    restart_needed = report.restart_needed.len(),
                    "configuration reloaded"
                );
                "ok"
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed; the running configuration stays");
                "error"
            }
        };
        self.metrics.config_reload(result);
        r
    }

    async fn reload_inner(&self) -> Result<Report, ReloadError> {
        let path = self.path.clone().ok_or(ReloadError::NoFile)?;
        let shown = path.display().to_string();
        let next = tokio::task::spawn_blocking(move || crate::config::load_file(&path))
            .await
            .map_err(|e| ReloadError::Invalid(format!("{shown}: {e}")))?
            .map_err(|e| ReloadError::Invalid(format!("{shown}:\n{e}")))?;
        let mut live = self.live.lock().await;
        let plan = plan::plan(&live.config, &live.removed, &next).map_err(ReloadError::Refused)?;
        self.check_primaries(&plan)?;
        let mut applied = Vec::new();
        let mut failed = Vec::new();
        for cp in &plan.clusters {
            match self.apply_cluster(cp).await {
                Ok(()) => applied.extend(cp.changes.iter().map(|c| format!("{}: {c}", cp.name))),
                Err(e) => failed.push(format!("{}: {e}", cp.name)),
            }
            live.removed.insert(cp.name.clone(), cp.removed.clone());
        }
        self.apply_global(&live.config, &next);
        applied.extend(plan.changes.iter().cloned());
        live.config = running_after(&live.config, next, &plan);
        if !failed.is_empty() {
            return Err(ReloadError::Partial(failed.join("; ")));
        }
        Ok(Report {
            applied,
            restart_needed: plan.restart_needed,
        })
    }

    /// Removing or moving the primary a cluster writes to would cut its writes: refuse.
    fn check_primaries(&self, plan: &Plan) -> Result<(), ReloadError> {
        for cp in &plan.clusters {
            let Some(ctx) = self.context(&cp.name) else {
                continue;
            };
            let topo = ctx.topology.borrow().clone();
            if let Some(p) = topo.primary() {
                let hit = |v: &[bool]| v.get(p.index).copied().unwrap_or(false);
                if cp.newly_removed.contains(&p.index) || hit(&cp.reset) {
                    return Err(ReloadError::Refused(format!(
                        "cluster {}: {} is the primary; switch over before removing or moving it",
                        cp.name, p.name
                    )));
                }
            }
        }
        Ok(())
    }

    fn context(&self, name: &str) -> Option<&Arc<ClusterCtx>> {
        self.contexts.iter().find(|c| c.name == name)
    }

    async fn apply_cluster(&self, cp: &ClusterPlan) -> Result<(), String> {
        if cp.changes.is_empty() {
            // Nothing in this cluster changed; TLS files may still have new contents.
            if let Some(ctx) = self.context(&cp.name) {
                ctx.config.store(Arc::new(cp.merged.clone()));
            }
            return Ok(());
        }
        let ctx = self
            .context(&cp.name)
            .ok_or_else(|| "no such running cluster".to_owned())?;
        let merged = Arc::new(cp.merged.clone());
        // Sessions read servers by slot: the config with the new slots goes first, then the
        // monitor publishes a topology that may route to them.
        ctx.config.store(merged.clone());
        if cp.classifier_changed {
            ctx.classifier
                .store(Arc::new(Classifier::new(ClassifierSettings {
                    write_functions: merged.routing.write_functions.clone(),
                    cache_size: merged.routing.classifier_cache_size,
                    dialect: match merged.protocol {
                        Protocol::Postgres => Dialect::Postgres,
                        Protocol::Mysql => Dialect::Mysql,
                    },
                })));
        }
        let gone = |i: usize| {
            cp.removed.get(i).copied().unwrap_or(false) || cp.reset.get(i).copied().unwrap_or(false)
        };
        ctx.reshape_pools(gone, cp.pool_changed.then_some(&*merged));
        let handle = self
            .failover
            .iter()
            .find(|(n, _)| *n == cp.name)
            .map(|(_, h)| h.clone())
            .ok_or_else(|| "no monitor".to_owned())?;
        let update = Reconfigure {
            cluster: merged,
            reset: cp.reset.clone(),
            removed: cp.removed.clone(),
        };
        match tokio::time::timeout(MONITOR_DEADLINE, handle.reconfigure(update)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the monitor did not take the new servers within {MONITOR_DEADLINE:?}"
            )),
        }
    }

    /// Users, limits and the admin token, shared by every cluster.
    fn apply_global(&self, running: &Config, next: &Config) {
        if running.users != next.users {
            let users = Arc::new(build_users(&next.users));
            for ctx in &self.contexts {
                ctx.users.store(users.clone());
            }
        }
        if running.limits != next.limits {
            let limits = Arc::new(next.limits.clone());
            for ctx in &self.contexts {
                ctx.limits.store(limits.clone());
            }
            let (old, new) = (
                running.limits.max_client_connections,
                next.limits.max_client_connections,
            );
            if new > old {
                self.client_slots.add_permits(new - old);
            } else if new < old {
                // Take the surplus as clients leave (released permits go to waiters first).
                let slots = self.client_slots.clone();
                let surplus = u32::try_from(old - new).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(p) = slots.acquire_many_owned(surplus).await {
                        p.forget();
                    }
                });
            }
        }
        if running.admin.token != next.admin.token {
            self.admin_token.store(Arc::new(next.admin.token.clone()));
        }
    }
}

/// The running configuration after a reload: the new file's settings, the running clusters
/// with their merged server slots, and what needs a restart left as it runs.
fn running_after(running: &Config, mut next: Config, plan: &Plan) -> Config {
    next.admin.listen = running.admin.listen;
    next.clusters = running
        .clusters
        .iter()
        .map(|old| {
            plan.clusters
                .iter()
                .find(|c| c.name == old.name)
                .map_or_else(|| old.clone(), |c| c.merged.clone())
        })
        .collect();
    next
}
