//! Builds the shared state, spawns listeners, the monitor and the admin listener, and owns shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::busy_poll::BusyPoll;
use crate::classify::{Classifier, ClassifierSettings, Dialect};
use crate::config::{Config, Protocol};
use crate::failover::WriteGate;
use crate::frontend::cluster::ClusterCtx;
use crate::frontend::mysql::serve_mysql_client;
use crate::frontend::pg::cancel::CancelRegistry;
use crate::frontend::pg::serve_client;
use crate::frontend::users::build_users;
use crate::listener::Listener;
use crate::metrics::{ErrorKind, Metrics};
use crate::monitor;
use crate::reload::{self, Reloader};
use crate::router::Balancer;

/// Run the proxy until `shutdown` is cancelled. `source` is the file SIGHUP and
/// `POST /api/reload` re-read (`None`: reloads are refused). After SIGTERM, sessions get
/// `limits.shutdown_timeout` to end on their own, then are closed and get `kill_grace` to go.
pub async fn run(
    config: Config,
    source: Option<PathBuf>,
    shutdown: CancellationToken,
    busy_poll: Option<Duration>,
    kill_grace: Duration,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let busy_poll = busy_poll.map(BusyPoll::new);
    let tracker = TaskTracker::new();
    let users = build_users(&config.users);
    let client_slots = Arc::new(Semaphore::new(config.limits.max_client_connections));
    let mut topologies = Vec::new();
    let mut handles = Vec::new();
    let mut pauses = Vec::new();
    let mut contexts = Vec::new();
    // Sessions end at once only when this fires: after SIGTERM plus `limits.shutdown_timeout`.
    let kill = Arc::new(crate::drain::Drain::default());
    for cluster in &config.clusters {
        let mut listeners = vec![Listener::tcp(cluster.listen).await.map_err(|e| {
            anyhow::anyhow!(
                "cluster {}: cannot listen on {}: {e}",
                cluster.name,
                cluster.listen
            )
        })?];
        if let Some(path) = &cluster.listen_socket {
            listeners.push(Listener::unix(path).await.map_err(|e| {
                anyhow::anyhow!(
                    "cluster {}: cannot listen on {}: {e}",
                    cluster.name,
                    path.display()
                )
            })?);
        }
        let gate = WriteGate::default();
        let pause = WriteGate::default();
        pauses.push((cluster.name.clone(), pause.clone()));
        let spawned = monitor::spawn(
            cluster,
            gate.clone(),
            metrics.clone(),
            shutdown.clone(),
            &tracker,
        );
        let topology = spawned.topology;
        topologies.push((cluster.name.clone(), topology.clone()));
        handles.push((cluster.name.clone(), spawned.failover));
        let ctx = Arc::new(ClusterCtx {
            name: cluster.name.clone(),
            config: ArcSwap::from_pointee(cluster.clone()),
            limits: ArcSwap::from_pointee(config.limits.clone()),
            topology,
            classifier: ArcSwap::from_pointee(Classifier::new(ClassifierSettings {
                write_functions: cluster.routing.write_functions.clone(),
                cache_size: cluster.routing.classifier_cache_size,
                dialect: match cluster.protocol {
                    Protocol::Postgres => Dialect::Postgres,
                    Protocol::Mysql => Dialect::Mysql,
                },
            })),
            balancer: Balancer::new(cluster.servers.len()),
            metrics: metrics.clone(),
            users: ArcSwap::from_pointee(users.clone()),
            cancels: CancelRegistry::default(),
            mysql: Default::default(),
            gate,
            pause: pause.clone(),
            draining: Default::default(),
            pg_pools: Default::default(),
            my_pools: Default::default(),
            busy_poll: busy_poll.clone(),
            positions: spawned.positions,
        });
        {
            // SIGTERM: idle sessions close (see `ClusterCtx::drain_wait`).
            let (c, stop) = (ctx.clone(), shutdown.clone());
            tracker.spawn(async move {
                stop.cancelled().await;
                c.draining.fire();
            });
        }
        {
            // Always: a reload may turn transaction pooling on.
            let (c, stop) = (ctx.clone(), shutdown.clone());
            tracker.spawn(async move {
                tokio::select! {
                    _ = c.reap_pools_forever() => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
        contexts.push(ctx.clone());
        for listener in listeners {
            tracing::info!(cluster = %cluster.name, listen = %listener, protocol = ?cluster.protocol, "accepting clients");
            tracker.spawn(accept_loop(
                listener,
                ctx.clone(),
                client_slots.clone(),
                shutdown.clone(),
                kill.clone(),
                tracker.clone(),
            ));
        }
    }
    if let Some(poller) = busy_poll {
        tracing::info!(window = ?poller.window(), "busy polling after client requests at low load");
        let stop = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = poller.run() => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    let admin_token = Arc::new(ArcSwap::from_pointee(config.admin.token.clone()));
    let reloader = Arc::new(Reloader::new(
        source,
        config.clone(),
        reload::Parts {
            contexts: contexts.clone(),
            failover: handles.clone(),
            client_slots: client_slots.clone(),
            admin_token: admin_token.clone(),
            metrics: metrics.clone(),
        },
    ));
    tracker.spawn(reload_on_sighup(reloader.clone(), shutdown.clone()));
    if let Some(addr) = config.admin.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("admin: cannot listen on {addr}: {e}"))?;
        tracing::info!(%addr, "admin listener up");
        let state = AdminState {
            metrics: metrics.clone(),
            clusters: topologies,
            failover: handles,
            token: admin_token,
            reloader: Some(reloader),
            pauses,
            paused: Default::default(),
            contexts,
        };
        let cancel = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = admin::serve(listener, state, cancel).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    shutdown.cancelled().await;
    // Draining: listeners are closed (accept loops end on `shutdown`); idle sessions close now,
    // sessions inside a transaction when it ends, the rest when the deadline passes.
    let deadline = config.limits.shutdown_timeout;
    tracing::info!(
        ?deadline,
        "draining: no new connections; open transactions may finish"
    );
    tracker.close();
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?deadline,
            "drain deadline passed: closing the remaining sessions"
        );
        kill.fire();
        let _ = tokio::time::timeout(kill_grace, tracker.wait()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// `SIGHUP`: reload the configuration file (the outcome is logged).
async fn reload_on_sighup(reloader: Arc<Reloader>, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /api/reload");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = reloader.reload().await;
            }
        }
    }
}

async fn accept_loop(
    listener: Listener,
    ctx: Arc<ClusterCtx>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    kill: Arc<crate::drain::Drain>,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning or dying.
                tracing::warn!(cluster = %ctx.name, error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        ctx.metrics.client_accepted(&ctx.name);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ctx.metrics.error(&ctx.name, ErrorKind::TooManyClients);
            tracing::warn!(cluster = %ctx.name, %peer, "too many client connections");
            tracker.spawn(refuse_too_many(stream, ctx.config().protocol));
            continue;
        };
        let ctx = ctx.clone();
        // The session's task polls this at every wake: an atomic load (see `crate::drain`).
        let stop = kill.wait();
        tracker.spawn(async move {
            match ctx.config().protocol {
                Protocol::Postgres => tokio::select! {
                    biased;
                    _ = serve_client(ctx, stream, peer) => {}
                    _ = stop => {}
                },
                Protocol::Mysql => tokio::select! {
                    biased;
                    _ = serve_mysql_client(ctx, stream, peer) => {}
                    _ = stop => {}
                },
            }
            drop(permit);
        });
    }
}

async fn refuse_too_many(mut stream: crate::tls::ClientStream, protocol: Protocol) {
    use tokio::io::AsyncWriteExt;
    let e = match protocol {
        Protocol::Postgres => crate::wire::pg::msg::error_response(
            crate::wire::pg::msg::Severity::Fatal,
            "53300",
            "sorry, too many clients already",
        )
        .to_vec(),
        Protocol::Mysql => {
            let mut out = bytes::BytesMut::new();
            crate::wire::mysql::packet::encode_into(
                &mut out,
                0,
                &crate::wire::mysql::status::err_packet(1040, "08004", "Too many connections"),
            );
            out.to_vec()
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&e)).await;
}
