//! The gate: one decision per call, and the audit row that records it.
//!
//! Operator calls (`ExperimentService`, `AgentRegistry`) need a bearer token from the tokens
//! file (`authorization: Bearer TOKEN`) or a client certificate with the operator role; the
//! agents' stream (`AgentService`) needs a client certificate with the agent role when TLS is
//! configured. A refused call answers `UNAUTHENTICATED` (no or bad credentials) or
//! `PERMISSION_DENIED` (a certificate of another role) before the service sees it.
//!
//! Every operator call is written to the audit log before it runs: a denied one as `denied`
//! with the reason, an admitted one as `allowed`, later set to `ok` or `error` by
//! [`Admitted::finish`]. When the admitted row cannot be written the call is refused
//! (`UNAVAILABLE`): nothing runs unaudited. Denied calls are written within a budget
//! ([`super::denied`]); a flood beyond it is counted and summed up in one row.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use tonic::{Code, Request, Response, Status};

use super::denied::{DeniedBudget, Verdict};
use super::principal::{Principal, Role, certificate_identity};
use super::{Tokens, Trust};
use crate::store::{AuditEntry, AuditOutcome, StoreHandle};

/// Authenticates calls and writes the operator calls to the audit log.
#[derive(Clone, Debug)]
pub struct Gate {
    tokens: Option<Arc<Tokens>>,
    /// TLS is configured: client certificates were verified against the client CA.
    certificates: bool,
    store: StoreHandle,
    denied: Arc<Mutex<DeniedBudget>>,
}

/// An operator call the gate let through; [`Admitted::finish`] records how it ended.
#[derive(Debug)]
pub struct Admitted {
    seq: i64,
    store: StoreHandle,
    pub principal: Principal,
}

/// Why a call was refused, and who the audit row says made it.
#[derive(Debug)]
struct Refusal {
    code: Code,
    principal: String,
    reason: String,
}

/// The audit action of the row that counts denied calls left out by the budget.
pub const DENIED_SUPPRESSED: &str = "denied-calls-not-recorded";

const NO_CREDENTIALS: &str = "no credentials: send a bearer token (faultline --token-file, \
     FAULTLINE_TOKEN or FAULTLINE_TOKEN_FILE) or an operator client certificate";

impl Gate {
    pub fn new(trust: &Trust, store: StoreHandle) -> Gate {
        Gate {
            tokens: trust.tokens.clone(),
            certificates: trust.tls.is_some(),
            store,
            denied: Arc::new(Mutex::new(DeniedBudget::new(Instant::now()))),
        }
    }

    fn authenticates_operators(&self) -> bool {
        self.tokens.is_some() || self.certificates
    }

    /// Admits an operator call, or refuses it; either way the decision is in the audit log
    /// before this returns.
    pub async fn admit<T>(
        &self,
        request: &Request<T>,
        action: &'static str,
        target: Option<String>,
        detail: Option<String>,
    ) -> Result<Admitted, Status> {
        let peer = request.remote_addr().map(|a| a.to_string());
        let decided = self.operator(request);
        let mut entry = AuditEntry {
            seq: 0,
            at: SystemTime::now(),
            principal: String::new(),
            action: action.to_owned(),
            target,
            peer,
            outcome: AuditOutcome::Allowed,
            detail,
        };
        match decided {
            Ok(principal) => {
                entry.principal = principal.to_string();
                let seq = self.store.append_audit(entry).await.map_err(|e| {
                    tracing::error!(error = %e, action, "audit log unavailable: call refused");
                    Status::unavailable(format!(
                        "the audit log cannot be written ({e}); nothing was done"
                    ))
                })?;
                Ok(Admitted {
                    seq,
                    store: self.store.clone(),
                    principal,
                })
            }
            Err(refusal) => {
                let verdict = self
                    .denied
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(Instant::now(), entry.at);
                let Verdict::Record(left_out) = verdict else {
                    return Err(Status::new(refusal.code, refusal.reason));
                };
                if let Some((n, since)) = left_out {
                    tracing::warn!(calls = n, "denied operator calls left out of the audit log");
                    let summary = AuditEntry {
                        seq: 0,
                        at: entry.at,
                        principal: "-".into(),
                        action: DENIED_SUPPRESSED.into(),
                        target: None,
                        peer: None,
                        outcome: AuditOutcome::Denied,
                        detail: Some(format!(
                            "{n} denied calls since {} were not recorded (more than {} a second)",
                            humantime::format_rfc3339_millis(since),
                            super::denied::PER_SECOND
                        )),
                    };
                    if let Err(e) = self.store.append_audit(summary).await {
                        tracing::error!(error = %e, "cannot audit the denied calls left out");
                    }
                }
                entry.principal = refusal.principal;
                entry.outcome = AuditOutcome::Denied;
                entry.detail = Some(refusal.reason.clone());
                tracing::warn!(
                    action,
                    principal = %entry.principal,
                    peer = entry.peer.as_deref().unwrap_or("unknown"),
                    reason = %refusal.reason,
                    "operator call denied"
                );
                if let Err(e) = self.store.append_audit(entry).await {
                    tracing::error!(error = %e, action, "cannot audit a denied call");
                }
                Err(Status::new(refusal.code, refusal.reason))
            }
        }
    }

    /// Who an operator call comes from, or why it is refused.
    fn operator<T>(&self, request: &Request<T>) -> Result<Principal, Refusal> {
        let refuse = |code, principal: &str, reason: String| Refusal {
            code,
            principal: principal.to_owned(),
            reason,
        };
        if let Some(value) = request.metadata().get("authorization") {
            let Some(token) = value.to_str().ok().and_then(bearer) else {
                return Err(refuse(
                    Code::Unauthenticated,
                    "unauthenticated",
                    "the authorization header is not `Bearer TOKEN`".into(),
                ));
            };
            let Some(tokens) = &self.tokens else {
                return Err(refuse(
                    Code::Unauthenticated,
                    "unauthenticated",
                    "this controller takes no bearer tokens (no --tokens-file)".into(),
                ));
            };
            return match tokens.check(token) {
                Some(name) => Ok(Principal::Token(name)),
                None => Err(refuse(
                    Code::Unauthenticated,
                    "invalid-token",
                    "the bearer token is not valid".into(),
                )),
            };
        }
        if let Some((role, name)) = self.peer_identity(request) {
            return match role {
                Role::Operator => Ok(Principal::Certificate { role, name }),
                _ => Err(refuse(
                    Code::PermissionDenied,
                    &format!("{role}:{name}"),
                    format!("a certificate of role {role} cannot call the operator API"),
                )),
            };
        }
        if self.authenticates_operators() {
            return Err(refuse(
                Code::Unauthenticated,
                "unauthenticated",
                NO_CREDENTIALS.into(),
            ));
        }
        Ok(Principal::Anonymous)
    }

    /// Admits an agent's stream: with TLS, only a certificate of the agent role.
    pub fn agent<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        if !self.certificates {
            return Ok(Principal::Anonymous);
        }
        let peer = request.remote_addr();
        let refused = |status: Status| {
            tracing::warn!(?peer, reason = status.message(), "agent stream refused");
            status
        };
        match self.peer_identity(request) {
            Some((Role::Agent, name)) => Ok(Principal::Certificate {
                role: Role::Agent,
                name,
            }),
            Some((role, name)) => Err(refused(Status::permission_denied(format!(
                "{role}:{name}: only a certificate of role agent may connect as an agent"
            )))),
            None => Err(refused(Status::unauthenticated(
                "agents must present a client certificate of role agent \
                 (faultline-agent --tls-cert, --tls-key)",
            ))),
        }
    }

    /// The role and name of the verified client certificate, if one was presented.
    fn peer_identity<T>(&self, request: &Request<T>) -> Option<(Role, String)> {
        if !self.certificates {
            return None;
        }
        let certs = request.peer_certs()?;
        certificate_identity(certs.first()?.as_ref())
    }
}

/// The token of `Bearer TOKEN` (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

// === impl Admitted ===

impl Admitted {
    /// Records how the call ended (see [`Ended::of`]).
    pub async fn finish(self, ended: Ended) {
        let Ended {
            outcome,
            target,
            detail,
        } = ended;
        if let Err(e) = self
            .store
            .finish_audit(self.seq, outcome, target, detail)
            .await
        {
            tracing::error!(error = %e, seq = self.seq, "cannot record an audited call's outcome");
        }
    }
}

/// How an admitted call ended, for its audit row.
#[derive(Debug)]
pub struct Ended {
    outcome: AuditOutcome,
    target: Option<String>,
    detail: Option<String>,
}

impl Ended {
    /// `ok`, with the target `created` names (Create's experiment), or `error` with the status.
    pub fn of<R>(
        result: &Result<Response<R>, Status>,
        created: impl FnOnce(&R) -> Option<String>,
    ) -> Ended {
        match result {
            Ok(r) => Ended {
                outcome: AuditOutcome::Ok,
                target: created(r.get_ref()),
                detail: None,
            },
            Err(s) => Ended {
                outcome: AuditOutcome::Error,
                target: None,
                detail: Some(format!("{:?}: {}", s.code(), s.message())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_takes_the_token_after_the_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
