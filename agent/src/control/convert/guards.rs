//! Local guards on the wire (`v1::LocalGuard`) to and from the domain
//! [`LocalGuard`](crate::guard::LocalGuard), and the domain [`Trip`] out as `v1::LocalGuardTrip`.
//!
//! A guard converts on its own here; that its faults are in the same desired state and that no
//! two guards share an experiment and name is checked by [`local_guards`], and that its route
//! is an `http`/`grpc` route of the agent by the route table (which knows the routes).

use std::collections::HashSet;
use std::time::Duration;

use faultline_proto::v1::{self, guard_metric::Kind};

use super::{ConvertError, duration_to_proto, positive_duration};
use crate::fault::Fault;
use crate::guard::{Comparison, FaultRef, GrpcCodes, GuardMetric, LocalGuard, Trip};

// === wire -> domain ===

impl TryFrom<v1::LocalGuard> for LocalGuard {
    type Error = ConvertError;

    /// `name`, `experiment`, `route`, `metric`, `comparison`, `window` and at least one fault
    /// are required; `threshold` must be finite and not negative (at most 1 for an error rate);
    /// `hold` absent is zero.
    fn try_from(g: v1::LocalGuard) -> Result<Self, ConvertError> {
        for (path, value) in [
            ("name", &g.name),
            ("experiment", &g.experiment),
            ("route", &g.route),
        ] {
            if value.is_empty() {
                return Err(ConvertError::new(path, "missing required field"));
            }
        }
        let metric = metric(g.metric)?;
        let comparison = match v1::Comparison::try_from(g.comparison) {
            Ok(v1::Comparison::Above) => Comparison::Above,
            Ok(v1::Comparison::Below) => Comparison::Below,
            Ok(v1::Comparison::Unspecified) => {
                return Err(ConvertError::new(
                    "comparison",
                    "must be COMPARISON_ABOVE or COMPARISON_BELOW",
                ));
            }
            Err(_) => {
                return Err(ConvertError::new(
                    "comparison",
                    format!("unknown enum value {}", g.comparison),
                ));
            }
        };
        let threshold = g.threshold;
        if !threshold.is_finite() || threshold < 0.0 {
            return Err(ConvertError::new(
                "threshold",
                format!("must be a finite number not below 0, got {threshold}"),
            ));
        }
        if matches!(metric, GuardMetric::ErrorRate { .. }) && threshold > 1.0 {
            return Err(ConvertError::new(
                "threshold",
                format!("an error rate is a ratio 0..1, got {threshold}"),
            ));
        }
        let window = g
            .window
            .ok_or_else(|| ConvertError::new("window", "missing required field"))?;
        let window = positive_duration(window, "window")?;
        let hold = match g.hold {
            None => Duration::ZERO,
            Some(d) => Duration::try_from(d).map_err(|_| {
                ConvertError::new(
                    "hold",
                    format!("must not be negative, got {}s {}ns", d.seconds, d.nanos),
                )
            })?,
        };
        if g.faults.is_empty() {
            return Err(ConvertError::new(
                "faults",
                "a local guard must name at least one fault to clear",
            ));
        }
        let faults = g
            .faults
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                for (path, value) in [("route", &f.route), ("name", &f.name)] {
                    if value.is_empty() {
                        return Err(ConvertError::new(
                            format!("faults[{i}].{path}"),
                            "missing required field",
                        ));
                    }
                }
                Ok(FaultRef {
                    route: f.route,
                    name: f.name,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LocalGuard {
            name: g.name,
            experiment: g.experiment,
            route: g.route,
            metric,
            comparison,
            threshold,
            window,
            hold,
            min_requests: g.min_requests,
            trip_on_no_data: g.trip_on_no_data,
            faults,
        })
    }
}

fn metric(m: Option<v1::GuardMetric>) -> Result<GuardMetric, ConvertError> {
    let kind = m
        .ok_or_else(|| ConvertError::new("metric", "missing required field"))?
        .kind
        .ok_or_else(|| {
            ConvertError::new(
                "metric.kind",
                "missing: exactly one of error_rate, latency_quantile, request_rate must be set",
            )
        })?;
    Ok(match kind {
        Kind::ErrorRate(e) if e.grpc_codes.is_empty() => GuardMetric::ErrorRate {
            grpc_codes: GrpcCodes::ALL_BUT_OK,
        },
        Kind::ErrorRate(e) => match GrpcCodes::from_codes(&e.grpc_codes) {
            Some(grpc_codes) => GuardMetric::ErrorRate { grpc_codes },
            None => {
                let (i, c) = e
                    .grpc_codes
                    .iter()
                    .enumerate()
                    .find(|&(_, &c)| GrpcCodes::from_codes(&[c]).is_none())
                    .expect("an invalid code");
                return Err(ConvertError::new(
                    format!("metric.error_rate.grpc_codes[{i}]"),
                    format!("must be a gRPC status code 0..16, got {c}"),
                ));
            }
        },
        Kind::LatencyQuantile(q) if q > 0.0 && q < 1.0 => GuardMetric::LatencyQuantile(q),
        Kind::LatencyQuantile(q) => {
            return Err(ConvertError::new(
                "metric.latency_quantile",
                format!("must be between 0 and 1 (exclusive), got {q}"),
            ));
        }
        Kind::RequestRate(v1::RequestRate {}) => GuardMetric::RequestRate,
    })
}

/// Every guard of a desired state whose faults are `faults`: each converted (errors name
/// `local_guards[i]...`), each fault it names among `faults`, no two with the same experiment
/// and name.
pub fn local_guards(
    guards: Vec<v1::LocalGuard>,
    faults: &[(String, Fault)],
) -> Result<Vec<LocalGuard>, ConvertError> {
    let mut seen = HashSet::with_capacity(guards.len());
    guards
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let at = format!("local_guards[{i}]");
            let g = LocalGuard::try_from(g).map_err(|e| e.within(&at))?;
            if !seen.insert(g.key()) {
                return Err(ConvertError::new(
                    format!("{at}.name"),
                    format!(
                        "experiment {:?} has two local guards named {:?}",
                        g.experiment, g.name
                    ),
                ));
            }
            for (j, f) in g.faults.iter().enumerate() {
                if !faults
                    .iter()
                    .any(|(route, fault)| *route == f.route && fault.name == f.name)
                {
                    return Err(ConvertError::new(
                        format!("{at}.faults[{j}]"),
                        format!(
                            "no fault named {:?} on route {:?} in this desired state",
                            f.name, f.route
                        ),
                    ));
                }
            }
            Ok(g)
        })
        .collect()
}

// === domain -> wire ===

impl From<&LocalGuard> for v1::LocalGuard {
    fn from(g: &LocalGuard) -> Self {
        let kind = match g.metric {
            GuardMetric::ErrorRate { grpc_codes } => Kind::ErrorRate(v1::ErrorRate {
                grpc_codes: if grpc_codes == GrpcCodes::ALL_BUT_OK {
                    Vec::new()
                } else {
                    grpc_codes.codes().collect()
                },
            }),
            GuardMetric::LatencyQuantile(q) => Kind::LatencyQuantile(q),
            GuardMetric::RequestRate => Kind::RequestRate(v1::RequestRate {}),
        };
        v1::LocalGuard {
            name: g.name.clone(),
            experiment: g.experiment.clone(),
            route: g.route.clone(),
            metric: Some(v1::GuardMetric { kind: Some(kind) }),
            comparison: match g.comparison {
                Comparison::Above => v1::Comparison::Above,
                Comparison::Below => v1::Comparison::Below,
            } as i32,
            threshold: g.threshold,
            window: Some(duration_to_proto(g.window)),
            hold: (!g.hold.is_zero()).then(|| duration_to_proto(g.hold)),
            min_requests: g.min_requests,
            trip_on_no_data: g.trip_on_no_data,
            faults: g
                .faults
                .iter()
                .map(|f| v1::FaultRef {
                    route: f.route.clone(),
                    name: f.name.clone(),
                })
                .collect(),
        }
    }
}

impl From<&Trip> for v1::LocalGuardTrip {
    fn from(t: &Trip) -> Self {
        v1::LocalGuardTrip {
            experiment: t.guard.experiment.clone(),
            guard: t.guard.name.clone(),
            value: t.value,
            threshold: t.threshold,
            breached_at: Some(t.breached_at.into()),
            tripped_at: Some(t.tripped_at.into()),
            cleared_at: Some(t.cleared_at.into()),
            cleared_faults: u32::try_from(t.cleared_faults).unwrap_or(u32::MAX),
            generation: t.generation,
        }
    }
}

#[cfg(test)]
mod tests;
