//! Validation of a cluster's `failover` and `pool` sections into the typed model.

use std::time::Duration;

use super::*;

impl Validator {
    pub(super) fn failover(
        &mut self,
        path: &str,
        raw: RawFailover,
        monitor: &MonitorConfig,
    ) -> FailoverConfig {
        let write_hold = self.duration(
            &format!("{path}.write_hold"),
            &raw.write_hold,
            Duration::from_secs(10),
        );
        let promote_timeout = self.positive_duration(
            &format!("{path}.promote_timeout"),
            &raw.promote_timeout,
            Duration::from_secs(30),
        );
        let switchover_timeout = self.positive_duration(
            &format!("{path}.switchover_timeout"),
            &raw.switchover_timeout,
            Duration::from_secs(10),
        );
        let user = raw.user.unwrap_or_else(|| monitor.user.clone());
        let password = raw.password.unwrap_or_else(|| monitor.password.clone());
        let replication = match (raw.replication_user, raw.replication_password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                self.problem(
                    path,
                    "give both `replication_user` and `replication_password`, or neither",
                );
                None
            }
        };
        FailoverConfig {
            mode: match raw.mode {
                RawFailoverMode::Auto => FailoverMode::Auto,
                RawFailoverMode::Follow => FailoverMode::Follow,
                RawFailoverMode::Off => FailoverMode::Off,
            },
            write_hold,
            promote_timeout,
            switchover_timeout,
            user,
            password,
            replication,
        }
    }
}

impl Validator {
    /// A server's own `pool_size`: at least 1 and not below the cluster's `pool.min_idle`.
    pub(super) fn server_pool_size(
        &mut self,
        path: &str,
        server: &ServerConfig,
        pool: &PoolConfig,
    ) {
        match server.pool_size {
            Some(0) => self.problem(path, "must be at least 1"),
            Some(size) if size < pool.min_idle => self.problem(
                path,
                format!("{size} is less than pool.min_idle ({})", pool.min_idle),
            ),
            _ => {}
        }
    }

    pub(super) fn pool(&mut self, path: &str, raw: RawPool) -> PoolConfig {
        let d = PoolConfig::default();
        let size = raw.size.unwrap_or(d.size);
        if size == 0 {
            self.problem(format!("{path}.size"), "must be at least 1");
        }
        let min_idle = raw.min_idle.unwrap_or(d.min_idle);
        if min_idle > size {
            self.problem(
                format!("{path}.min_idle"),
                format!("{min_idle} is more than pool.size ({size})"),
            );
        }
        let checkout_timeout = self.positive_duration(
            &format!("{path}.checkout_timeout"),
            &raw.checkout_timeout,
            d.checkout_timeout,
        );
        let diagnostics_hold = self.duration(
            &format!("{path}.diagnostics_hold"),
            &raw.diagnostics_hold,
            d.diagnostics_hold,
        );
        let mut optional = |key: &str, value: &Scalar, default: Option<Duration>| {
            if value.is_off() {
                None
            } else {
                let fallback = default.unwrap_or(Duration::ZERO);
                Some(self.positive_duration(&format!("{path}.{key}"), value, fallback))
            }
        };
        let idle_timeout = optional("idle_timeout", &raw.idle_timeout, d.idle_timeout);
        let max_lifetime = optional("max_lifetime", &raw.max_lifetime, d.max_lifetime);
        PoolConfig {
            mode: match raw.mode {
                RawPoolMode::Session => PoolMode::Session,
                RawPoolMode::Transaction => PoolMode::Transaction,
            },
            size,
            min_idle,
            checkout_timeout,
            idle_timeout,
            max_lifetime,
            max_prepared_statements: raw
                .max_prepared_statements
                .unwrap_or(d.max_prepared_statements),
            diagnostics_hold,
        }
    }
}
