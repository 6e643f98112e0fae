//! The admin console: PgBouncer-style `SHOW ...` commands over the PostgreSQL protocol, for
//! users with `console: true` who connect to the database `switchyard` (`psql -d switchyard`).
//!
//! Read-only and per cluster (the listener's): `SHOW HELP`, `SHOW SERVERS`, `SHOW POOLS`,
//! `SHOW STATS`, `SHOW CONFIG`, `SHOW VERSION`. Every column is text. Simple query protocol only;
//! changes (reload, pause, switchover) go through the admin HTTP API.

use bytes::{BufMut, BytesMut};

use super::session::{ClientConn, ClientError};
use crate::frontend::cluster::ClusterCtx;
use crate::topology::{Health, Lag};
use crate::wire::pg::msg::{self, Severity};

/// The database name that opens the console (for users with `console: true`).
pub const CONSOLE_DATABASE: &str = "switchyard";

const HELP: &[&str] = &[
    "SHOW SERVERS  -- every server: role, health, replication state, lag, weight, mode, fence",
    "SHOW POOLS    -- transaction pools: server, user, size, idle, in_use, waiting",
    "SHOW STATS    -- clients, pinned sessions, topology epoch, primary, failover phase",
    "SHOW CONFIG   -- the cluster's pool, routing, failover, monitor and TLS settings",
    "SHOW VERSION  -- the proxy's version",
];

/// A result: column names and text rows (`None` = NULL).
struct Table {
    columns: Vec<&'static str>,
    rows: Vec<Vec<Option<String>>>,
}

/// Greet the (already authenticated) client, then answer commands until it leaves.
pub async fn run(ctx: &ClusterCtx, client: &mut ClientConn, user: &str) -> Result<(), ClientError> {
    tracing::info!(cluster = %ctx.name, %user, "admin console session");
    for (k, v) in [
        ("server_version", "15.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", "switchyard-console"),
    ] {
        client.queue(&msg::parameter_status(k, v));
    }
    client.queue(&msg::ready_for_query(b'I'));
    client.flush().await?;
    let mut skipping = false;
    loop {
        let f = client.read_frame().await?;
        match f.tag {
            b'X' => return Ok(()),
            b'Q' => {
                let sql = msg::query_text(f.body())
                    .map(|q| String::from_utf8_lossy(q).into_owned())
                    .unwrap_or_default();
                answer(ctx, client, &sql);
                client.queue(&msg::ready_for_query(b'I'));
            }
            // Extended protocol: one error, then everything up to Sync is skipped.
            b'S' => {
                skipping = false;
                client.queue(&msg::ready_for_query(b'I'));
            }
            _ if skipping => {}
            _ => {
                skipping = true;
                client.queue(&msg::error_response(
                    Severity::Error,
                    "0A000",
                    "the admin console speaks the simple query protocol only",
                ));
            }
        }
        client.flush().await?;
    }
}

fn answer(ctx: &ClusterCtx, client: &mut ClientConn, sql: &str) {
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let table = match words.as_slice() {
        [] => {
            client.queue(&empty_query());
            return;
        }
        ["SHOW", "HELP"] => Some(Table {
            columns: vec!["command"],
            rows: HELP.iter().map(|h| vec![Some((*h).to_owned())]).collect(),
        }),
        ["SHOW", "SERVERS"] => Some(servers(ctx)),
        ["SHOW", "POOLS"] => Some(pools(ctx)),
        ["SHOW", "STATS"] => Some(stats(ctx)),
        ["SHOW", "CONFIG"] => Some(config(ctx)),
        ["SHOW", "VERSION"] => Some(Table {
            columns: vec!["version"],
            rows: vec![vec![Some(format!(
                "switchyard {}",
                env!("CARGO_PKG_VERSION")
            ))]],
        }),
        _ => None,
    };
    match table {
        Some(t) => write_table(client, &t),
        None => client.queue(&msg::error_response(
            Severity::Error,
            "42601",
            &format!("unknown admin console command {sql:?}; try SHOW HELP"),
        )),
    }
}

fn servers(ctx: &ClusterCtx) -> Table {
    let topo = ctx.topology.borrow().clone();
    let rows = topo
        .servers
        .iter()
        .map(|s| {
            let (lag_seconds, lag_bytes) = match s.lag {
                Lag::Known { seconds, bytes } => {
                    (Some(format!("{seconds:.3}")), bytes.map(|b| b.to_string()))
                }
                Lag::Unknown => (None, None),
            };
            vec![
                Some(s.name.clone()),
                Some(s.address.clone()),
                Some(s.role.as_str().to_owned()),
                Some(if s.health == Health::Up { "up" } else { "down" }.to_owned()),
                Some(s.state.as_str().to_owned()),
                Some(s.state_reason.to_owned()),
                lag_seconds,
                lag_bytes,
                Some(s.weight.to_string()),
                Some(s.mode.as_str().to_owned()),
                Some(s.fenced.to_string()),
                s.last_error.clone(),
            ]
        })
        .collect();
    Table {
        columns: vec![
            "name",
            "address",
            "role",
            "health",
            "state",
            "state_reason",
            "lag_seconds",
            "lag_bytes",
            "weight",
            "mode",
            "fenced",
            "last_error",
        ],
        rows,
    }
}

fn pools(ctx: &ClusterCtx) -> Table {
    let config = ctx.config();
    let name = |i: usize| config.servers.get(i).map_or("", |s| s.name.as_str());
    let mut stats: Vec<(&str, crate::pool::PoolStats)> = Vec::new();
    stats.extend(
        ctx.pg_pools
            .all()
            .iter()
            .map(|(k, p)| (name(k.server), p.stats())),
    );
    stats.extend(
        ctx.my_pools
            .all()
            .iter()
            .map(|(k, p)| (name(k.server), p.stats())),
    );
    let rows = stats
        .into_iter()
        .map(|(server, s)| {
            vec![
                Some(server.to_owned()),
                Some(s.user),
                Some(s.size.to_string()),
                Some(s.idle.to_string()),
                Some(s.in_use.to_string()),
                Some(s.waiting.to_string()),
            ]
        })
        .collect();
    Table {
        columns: vec!["server", "user", "size", "idle", "in_use", "waiting"],
        rows,
    }
}

fn stats(ctx: &ClusterCtx) -> Table {
    let topo = ctx.topology.borrow().clone();
    let pinned: Vec<String> = ctx
        .metrics
        .pinned_now(&ctx.name)
        .into_iter()
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect();
    Table {
        columns: vec![
            "cluster", "clients", "pinned", "epoch", "primary", "failover",
        ],
        rows: vec![vec![
            Some(ctx.name.clone()),
            Some(ctx.metrics.client_gauge(&ctx.name).get().to_string()),
            Some(pinned.join(" ")),
            Some(topo.epoch.to_string()),
            topo.primary().map(|p| p.name.clone()),
            Some(topo.failover.to_owned()),
        ]],
    }
}

fn config(ctx: &ClusterCtx) -> Table {
    let c = ctx.config();
    let l = ctx.limits();
    let d = |v: Option<std::time::Duration>| v.map_or("off".to_owned(), |d| format!("{d:?}"));
    let settings: Vec<(&str, String)> = vec![
        ("protocol", format!("{:?}", c.protocol).to_lowercase()),
        ("listen", c.listen.to_string()),
        ("servers", c.servers.len().to_string()),
        ("pool.mode", format!("{:?}", c.pool.mode).to_lowercase()),
        ("pool.size", c.pool.size.to_string()),
        ("pool.min_idle", c.pool.min_idle.to_string()),
        (
            "pool.checkout_timeout",
            format!("{:?}", c.pool.checkout_timeout),
        ),
        ("pool.idle_timeout", d(c.pool.idle_timeout)),
        ("pool.max_lifetime", d(c.pool.max_lifetime)),
        ("routing.balance", format!("{:?}", c.routing.balance)),
        ("routing.fallback", format!("{:?}", c.routing.fallback)),
        (
            "routing.consistency",
            format!("{:?}", c.routing.consistency),
        ),
        ("routing.max_replica_lag", d(c.routing.max_replica_lag)),
        ("monitor.interval", format!("{:?}", c.monitor.interval)),
        ("failover.mode", c.failover.mode.as_str().to_owned()),
        (
            "failover.write_hold",
            format!("{:?}", c.failover.write_hold),
        ),
        ("tls.mode", format!("{:?}", c.tls.mode).to_lowercase()),
        (
            "server_tls.mode",
            format!("{:?}", c.server_tls.mode).to_lowercase(),
        ),
        (
            "limits.max_client_connections",
            l.max_client_connections.to_string(),
        ),
        ("limits.max_message_size", l.max_message_size.to_string()),
    ];
    Table {
        columns: vec!["key", "value"],
        rows: settings
            .into_iter()
            .map(|(k, v)| vec![Some(k.to_owned()), Some(v)])
            .collect(),
    }
}

/// RowDescription (all text), DataRows, CommandComplete `SHOW`.
fn write_table(client: &mut ClientConn, t: &Table) {
    let mut b = BytesMut::new();
    message(&mut b, b'T', |b| {
        b.put_i16(t.columns.len() as i16);
        for c in &t.columns {
            b.put_slice(c.as_bytes());
            b.put_u8(0);
            b.put_i32(0); // table oid
            b.put_i16(0); // column number
            b.put_i32(25); // text
            b.put_i16(-1);
            b.put_i32(-1);
            b.put_i16(0); // text format
        }
    });
    for row in &t.rows {
        message(&mut b, b'D', |b| {
            b.put_i16(row.len() as i16);
            for v in row {
                match v {
                    Some(s) => {
                        b.put_i32(s.len() as i32);
                        b.put_slice(s.as_bytes());
                    }
                    None => b.put_i32(-1),
                }
            }
        });
    }
    client.queue(&b);
    client.queue(&msg::command_complete("SHOW"));
}

fn empty_query() -> BytesMut {
    let mut b = BytesMut::new();
    message(&mut b, b'I', |_| {});
    b
}

/// Append one message: tag, length, body.
fn message(b: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = b.len();
    b.put_u8(tag);
    b.put_i32(0);
    body(b);
    let len = i32::try_from(b.len() - start - 1).unwrap_or(i32::MAX);
    b[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}
