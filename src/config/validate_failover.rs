//! Validation of a cluster's `failover` section into the typed model.

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
