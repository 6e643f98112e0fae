//! Validation of a cluster's `routing` and `monitor` sections into the typed model.

use std::time::Duration;

use super::*;

impl Validator {
    pub(super) fn routing(&mut self, path: &str, raw: RawRouting) -> RoutingConfig {
        let lag_path = format!("{path}.max_replica_lag");
        let max_replica_lag = match &raw.max_replica_lag {
            Scalar::Missing => Some(Duration::from_secs(10)),
            s if s.is_off() => None,
            s => Some(self.duration(&lag_path, s, Duration::ZERO)),
        };
        let bytes_path = format!("{path}.max_replica_lag_bytes");
        let max_replica_lag_bytes = match &raw.max_replica_lag_bytes {
            Scalar::Missing => None,
            s if s.is_off() => None,
            s => Some(self.size(&bytes_path, s, 0)),
        };
        let causal_path = format!("{path}.causal_timeout");
        let causal_timeout = match &raw.causal_timeout {
            Scalar::Missing => Duration::from_millis(500),
            s => self.duration(&causal_path, s, Duration::ZERO),
        };
        let causal_wait = raw.causal_wait.unwrap_or(false);
        if causal_wait && causal_timeout.is_zero() {
            self.problem(
                format!("{path}.causal_wait"),
                "waits up to causal_timeout, which is 0: give causal_timeout a duration (e.g. 500ms) \
                 or set causal_wait: false",
            );
        }
        let readmit_path = format!("{path}.lag_readmit_after");
        let lag_readmit_after = if raw.lag_readmit_after.is_off() {
            self.problem(
                &readmit_path,
                "cannot be off: write a duration (\"0s\" readmits at once)",
            );
            Duration::ZERO
        } else {
            self.duration(&readmit_path, &raw.lag_readmit_after, DEFAULT_READMIT_AFTER)
        };
        let alert_path = format!("{path}.lag_alert");
        let lag_alert = match &raw.lag_alert {
            Scalar::Missing => Some(DEFAULT_LAG_ALERT),
            s if s.is_off() => None,
            s => Some(self.duration(&alert_path, s, DEFAULT_LAG_ALERT)),
        };
        let mut write_functions: Vec<String> = Vec::new();
        for (i, f) in raw.write_functions.iter().enumerate() {
            match normalize_function_name(f) {
                Some(n) => {
                    if !write_functions.contains(&n) {
                        write_functions.push(n);
                    }
                }
                None => self.problem(
                    format!("{path}.write_functions[{i}]"),
                    format!("{f:?} is not a function name (write e.g. \"my_schema.bump_counter\")"),
                ),
            }
        }
        RoutingConfig {
            balance: match raw.balance {
                RawBalance::RoundRobin => Balance::RoundRobin,
                RawBalance::LeastConnections => Balance::LeastConnections,
                RawBalance::Random => Balance::Random,
            },
            max_replica_lag,
            max_replica_lag_bytes,
            lag_readmit_after,
            lag_alert,
            fallback: match raw.fallback {
                RawFallback::Primary => Fallback::Primary,
                RawFallback::Error => Fallback::Error,
            },
            write_functions,
            classifier_cache_size: raw.classifier_cache_size.unwrap_or(10_000),
            consistency: match raw.consistency {
                RawConsistency::Eventual => Consistency::Eventual,
                RawConsistency::ReadYourWrites => Consistency::ReadYourWrites,
                RawConsistency::Global => Consistency::Global,
                RawConsistency::Strong => Consistency::Strong,
            },
            causal_timeout,
            causal_wait,
        }
    }

    pub(super) fn monitor(&mut self, path: &str, raw: RawMonitor) -> MonitorConfig {
        let interval = self.duration(
            &format!("{path}.interval"),
            &raw.interval,
            Duration::from_secs(1),
        );
        if interval < MIN_MONITOR_INTERVAL {
            self.problem(
                format!("{path}.interval"),
                format!("{interval:?} is too small (at least 50ms)"),
            );
        }
        let timeout = self.positive_duration(
            &format!("{path}.timeout"),
            &raw.timeout,
            Duration::from_secs(2),
        );
        let healthy_after = raw.healthy_after.unwrap_or(2);
        if healthy_after == 0 {
            self.problem(format!("{path}.healthy_after"), "must be at least 1");
        }
        let unhealthy_after = raw.unhealthy_after.unwrap_or(3);
        if unhealthy_after == 0 {
            self.problem(format!("{path}.unhealthy_after"), "must be at least 1");
        }
        let user = match raw.user {
            Some(u) if !u.is_empty() => u,
            _ => {
                self.problem(format!("{path}.user"), "required (a non-empty user name)");
                String::new()
            }
        };
        MonitorConfig {
            interval,
            timeout,
            healthy_after,
            unhealthy_after,
            user,
            password: raw.password.unwrap_or_default(),
            database: raw.database.unwrap_or_else(|| "postgres".to_owned()),
        }
    }
}
