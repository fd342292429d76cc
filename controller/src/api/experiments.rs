//! `faultline.v1.ExperimentService`.
//!
//! Validate and Create check a spec against the controller's caps; Create stores its canonical
//! JSON and a seed (the spec's, or a random one, recorded). Abort ends a pending or running
//! experiment; Delete removes a finished one. Start hands the experiment to the
//! [`Hub`](crate::hub::Hub), which chooses targets, commits them and the running state, then
//! pushes the faults; Abort of a running experiment has the hub withdraw them at once. Watch
//! streams the timeline ([`watch`](super::watch)); every commit here bumps [`Changes`].

use std::sync::Arc;
use std::time::SystemTime;

use faultline_proto::v1::experiment_service_server::ExperimentService;
use faultline_proto::v1::{
    self, AbortExperimentRequest, CreateExperimentRequest, DeleteExperimentRequest,
    DeleteExperimentResponse, FieldError, GetExperimentRequest, GetExperimentResponse,
    ListExperimentsRequest, ListExperimentsResponse, ResumeRequest, ResumeResponse,
    StartExperimentRequest, StopAllRequest, StopAllResponse, ValidateRequest, ValidateResponse,
    WatchExperimentRequest,
};
use faultline_proto::v1::{ListAuditRequest, ListAuditResponse};
use tonic::{Request, Response, Status};

use super::canonical::canonical_json;
use super::watch::{self, Changes};
use super::{convert, status};
use crate::hub::{Hub, StartError};
use crate::metrics::{AbortReason, Metrics};
use crate::spec::{self, Caps, SpecError};
use crate::store::{self, ExperimentState, StoreHandle};

/// The service: the store, the caps, and the hub that runs experiments.
#[derive(Clone, Debug)]
pub struct ExperimentApi {
    store: StoreHandle,
    caps: Arc<Caps>,
    hub: Option<Hub>,
    changes: Changes,
    metrics: Arc<Metrics>,
}

impl ExperimentApi {
    pub fn new(store: StoreHandle, caps: Arc<Caps>) -> Self {
        Self {
            store,
            caps,
            hub: None,
            changes: Changes::default(),
            metrics: Arc::default(),
        }
    }

    /// Counts manual aborts in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Shares `changes` with the hub, so Watch sees the events it commits too.
    pub fn with_changes(mut self, changes: Changes) -> Self {
        self.changes = changes;
        self
    }

    /// Runs experiments through `hub`; without one, Start is `UNIMPLEMENTED`.
    pub fn with_hub(mut self, hub: Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// The wire form of a stored experiment, with its start time and targets.
    async fn wire(&self, e: &store::Experiment) -> Result<v1::Experiment, Status> {
        let timeline = self
            .store
            .timeline(e.id)
            .await
            .map_err(status::from_store)?;
        let targets = self.store.targets(e.id).await.map_err(status::from_store)?;
        Ok(convert::experiment(e, &timeline, targets))
    }

    async fn by_name(&self, name: String) -> Result<store::Experiment, Status> {
        if name.is_empty() {
            return Err(status::missing("name"));
        }
        self.store.get(name).await.map_err(status::from_store)
    }
}

/// The spec's text from either member of the `spec` oneof.
fn spec_text(yaml: Option<v1::validate_request::Spec>) -> Result<String, Status> {
    match yaml {
        Some(v1::validate_request::Spec::SpecYaml(t) | v1::validate_request::Spec::SpecJson(t)) => {
            Ok(t)
        }
        None => Err(status::missing("spec (spec_yaml or spec_json)")),
    }
}

fn field_error(e: &SpecError) -> FieldError {
    FieldError {
        path: e.path.to_string(),
        line: e.location.map(|l| l.line),
        column: e.location.map(|l| l.column),
        message: e.message.clone(),
    }
}

#[tonic::async_trait]
impl ExperimentService for ExperimentApi {
    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let text = spec_text(request.into_inner().spec)?;
        let response = match spec::validate(&text, &self.caps) {
            Ok(exp) => ValidateResponse {
                valid: true,
                errors: Vec::new(),
                spec: canonical_json(&text, &exp, None),
            },
            Err(e) => ValidateResponse {
                valid: false,
                errors: vec![field_error(&e)],
                spec: String::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn create(
        &self,
        request: Request<CreateExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        let text = match request.into_inner().spec {
            Some(v1::create_experiment_request::Spec::SpecYaml(t))
            | Some(v1::create_experiment_request::Spec::SpecJson(t)) => t,
            None => return Err(status::missing("spec (spec_yaml or spec_json)")),
        };
        let exp = spec::validate(&text, &self.caps).map_err(|e| status::from_spec(&e))?;
        let seed = exp.seed.unwrap_or_else(|| fastrand::u64(..));
        let json = canonical_json(&text, &exp, Some(seed));
        let id = self
            .store
            .create_experiment(&exp.name, &json, seed, SystemTime::now())
            .await
            .map_err(status::from_store)?;
        self.changes.notify();
        let stored = self.store.get(id).await.map_err(status::from_store)?;
        tracing::info!(experiment = %stored.name, seed, "experiment created");
        Ok(Response::new(self.wire(&stored).await?))
    }

    async fn start(
        &self,
        request: Request<StartExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        let Some(hub) = &self.hub else {
            return Err(Status::unimplemented(
                "Start needs the controller's hub, which this service was built without",
            ));
        };
        let e = self.by_name(request.into_inner().name).await?;
        hub.start(e.name.clone()).await.map_err(|err| match err {
            StartError::Store(e) => status::from_store(e),
            StartError::Stopped => Status::unavailable(err.to_string()),
            StartError::BadSpec { .. } => Status::internal(err.to_string()),
            StartError::NotPending { .. }
            | StartError::Targets(_)
            | StartError::Conflicts(_)
            | StartError::Preflight(_)
            | StartError::EmergencyStop(_) => Status::failed_precondition(err.to_string()),
        })?;
        let stored = self.store.get(e.id).await.map_err(status::from_store)?;
        Ok(Response::new(self.wire(&stored).await?))
    }

    async fn list(
        &self,
        request: Request<ListExperimentsRequest>,
    ) -> Result<Response<ListExperimentsResponse>, Status> {
        let filter = convert::state_filter(&request.into_inner().states);
        let mut all = self.store.list(None).await.map_err(status::from_store)?;
        if let Some(states) = filter {
            all.retain(|e| states.contains(&e.state.kind()));
        }
        let mut experiments = Vec::with_capacity(all.len());
        for e in all.iter().rev() {
            experiments.push(self.wire(e).await?);
        }
        Ok(Response::new(ListExperimentsResponse { experiments }))
    }

    async fn get(
        &self,
        request: Request<GetExperimentRequest>,
    ) -> Result<Response<GetExperimentResponse>, Status> {
        let e = self.by_name(request.into_inner().name).await?;
        let timeline = self
            .store
            .timeline(e.id)
            .await
            .map_err(status::from_store)?;
        let targets = self.store.targets(e.id).await.map_err(status::from_store)?;
        Ok(Response::new(GetExperimentResponse {
            events: convert::timeline(&e.name, &timeline),
            experiment: Some(convert::experiment(&e, &timeline, targets)),
        }))
    }

    type WatchStream = watch::WatchStream;

    async fn watch(
        &self,
        request: Request<WatchExperimentRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let WatchExperimentRequest {
            name,
            after_sequence,
        } = request.into_inner();
        let e = self.by_name(name).await?;
        Ok(Response::new(watch::spawn(
            self.store.clone(),
            &self.changes,
            e.id,
            e.name,
            after_sequence,
        )))
    }

    async fn abort(
        &self,
        request: Request<AbortExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        let AbortExperimentRequest { name, reason } = request.into_inner();
        if reason.trim().is_empty() {
            return Err(status::missing("reason"));
        }
        let e = self.by_name(name).await?;
        // Pending or running: the store refuses a finished one (FAILED_PRECONDITION). The
        // state is committed first; then the hub withdraws the faults from the agents.
        self.store
            .transition(
                e.id,
                ExperimentState::aborted(reason.clone()),
                SystemTime::now(),
            )
            .await
            .map_err(status::from_store)?;
        self.changes.notify();
        self.metrics.aborted(AbortReason::Manual, 1);
        if let Some(hub) = &self.hub {
            hub.ended(e.id).await;
        }
        tracing::info!(experiment = %e.name, %reason, "experiment aborted");
        let stored = self.store.get(e.id).await.map_err(status::from_store)?;
        Ok(Response::new(self.wire(&stored).await?))
    }

    async fn delete(
        &self,
        request: Request<DeleteExperimentRequest>,
    ) -> Result<Response<DeleteExperimentResponse>, Status> {
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(status::missing("name"));
        }
        self.store
            .delete(name.clone(), SystemTime::now())
            .await
            .map_err(status::from_store)?;
        self.changes.notify();
        tracing::info!(experiment = %name, "experiment deleted");
        Ok(Response::new(DeleteExperimentResponse {}))
    }

    async fn stop_all(
        &self,
        request: Request<StopAllRequest>,
    ) -> Result<Response<StopAllResponse>, Status> {
        let reason = request.into_inner().reason;
        if reason.trim().is_empty() {
            return Err(status::missing("reason"));
        }
        let Some(hub) = &self.hub else {
            return Err(Status::unimplemented(
                "StopAll needs the controller's hub, which this service was built without",
            ));
        };
        // Recorded first, so that a restart from here on still refuses starts.
        let stop = self
            .store
            .set_emergency_stop(reason.clone(), SystemTime::now())
            .await
            .map_err(status::from_store)?;
        let aborted = hub
            .stop_all(stop.reason.clone())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::warn!(reason = %stop.reason, aborted = ?aborted, "emergency stop");
        Ok(Response::new(StopAllResponse {
            aborted,
            since: Some(convert::timestamp(stop.since)),
        }))
    }

    async fn resume(
        &self,
        _request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        let was_stopped = self
            .store
            .clear_emergency_stop()
            .await
            .map_err(status::from_store)?;
        if let Some(hub) = &self.hub {
            hub.resume().await;
        }
        Ok(Response::new(ResumeResponse { was_stopped }))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => DEFAULT_AUDIT_LIMIT,
            n => (n as usize).min(MAX_AUDIT_LIMIT),
        };
        let rows = self
            .store
            .audit_log(limit)
            .await
            .map_err(status::from_store)?;
        Ok(Response::new(ListAuditResponse {
            records: rows.into_iter().map(convert::audit_record).collect(),
        }))
    }
}

/// Audit records ListAudit answers when no limit is asked for, and at most.
const DEFAULT_AUDIT_LIMIT: usize = 100;
const MAX_AUDIT_LIMIT: usize = 10_000;
