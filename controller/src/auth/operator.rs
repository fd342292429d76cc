//! The operator API behind the [`Gate`]: every `ExperimentService` and `AgentRegistry` call is
//! authenticated and audited here, around the services that do the work, so no handler checks
//! credentials itself and none can forget to.

use faultline_proto::v1::agent_registry_server::AgentRegistry;
use faultline_proto::v1::experiment_service_server::ExperimentService;
use faultline_proto::v1::{
    self, AbortExperimentRequest, CreateExperimentRequest, DeleteExperimentRequest,
    DeleteExperimentResponse, GetExperimentRequest, GetExperimentResponse, ListAgentsRequest,
    ListAgentsResponse, ListExperimentsRequest, ListExperimentsResponse, ResumeRequest,
    ResumeResponse, StartExperimentRequest, StopAllRequest, StopAllResponse, ValidateRequest,
    ValidateResponse, WatchExperimentRequest,
};
use faultline_proto::v1::{ListAuditRequest, ListAuditResponse};
use tonic::{Request, Response, Status};

use super::Gate;
use super::gate::Ended;

/// `inner` with every call through `gate`.
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    gate: Gate,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, gate: Gate) -> Self {
        Guarded { inner, gate }
    }
}

/// A name, or none when the request left it empty.
fn named(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_owned())
}

/// A reason given with an abort or an emergency stop, for the audit row's detail.
fn reason(reason: &str) -> Option<String> {
    (!reason.is_empty()).then(|| format!("reason: {reason}"))
}

fn none<R>(_: &R) -> Option<String> {
    None
}

/// Admits the call (or returns the refusal), runs it, records its outcome.
macro_rules! guarded {
    ($self:ident, $request:ident, $action:literal, $target:expr, $detail:expr, $call:ident, $created:expr) => {{
        let admitted = $self
            .gate
            .admit(&$request, $action, $target, $detail)
            .await?;
        let result = $self.inner.$call($request).await;
        // Summarised before the await: a response stream need not be `Sync`.
        let ended = Ended::of(&result, $created);
        admitted.finish(ended).await;
        result
    }};
}

#[tonic::async_trait]
impl<S: ExperimentService> ExperimentService for Guarded<S> {
    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        guarded!(
            self,
            request,
            "ExperimentService/Validate",
            None,
            None,
            validate,
            none
        )
    }

    async fn create(
        &self,
        request: Request<CreateExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        guarded!(
            self,
            request,
            "ExperimentService/Create",
            None,
            None,
            create,
            |e: &v1::Experiment| named(&e.name)
        )
    }

    async fn start(
        &self,
        request: Request<StartExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        let target = named(&request.get_ref().name);
        guarded!(
            self,
            request,
            "ExperimentService/Start",
            target,
            None,
            start,
            none
        )
    }

    async fn list(
        &self,
        request: Request<ListExperimentsRequest>,
    ) -> Result<Response<ListExperimentsResponse>, Status> {
        guarded!(
            self,
            request,
            "ExperimentService/List",
            None,
            None,
            list,
            none
        )
    }

    async fn get(
        &self,
        request: Request<GetExperimentRequest>,
    ) -> Result<Response<GetExperimentResponse>, Status> {
        let target = named(&request.get_ref().name);
        guarded!(
            self,
            request,
            "ExperimentService/Get",
            target,
            None,
            get,
            none
        )
    }

    type WatchStream = S::WatchStream;

    async fn watch(
        &self,
        request: Request<WatchExperimentRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let target = named(&request.get_ref().name);
        guarded!(
            self,
            request,
            "ExperimentService/Watch",
            target,
            None,
            watch,
            none
        )
    }

    async fn abort(
        &self,
        request: Request<AbortExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        let target = named(&request.get_ref().name);
        let detail = reason(&request.get_ref().reason);
        guarded!(
            self,
            request,
            "ExperimentService/Abort",
            target,
            detail,
            abort,
            none
        )
    }

    async fn delete(
        &self,
        request: Request<DeleteExperimentRequest>,
    ) -> Result<Response<DeleteExperimentResponse>, Status> {
        let target = named(&request.get_ref().name);
        guarded!(
            self,
            request,
            "ExperimentService/Delete",
            target,
            None,
            delete,
            none
        )
    }

    async fn stop_all(
        &self,
        request: Request<StopAllRequest>,
    ) -> Result<Response<StopAllResponse>, Status> {
        let detail = reason(&request.get_ref().reason);
        guarded!(
            self,
            request,
            "ExperimentService/StopAll",
            None,
            detail,
            stop_all,
            none
        )
    }

    async fn resume(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        guarded!(
            self,
            request,
            "ExperimentService/Resume",
            None,
            None,
            resume,
            none
        )
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        guarded!(
            self,
            request,
            "ExperimentService/ListAudit",
            None,
            None,
            list_audit,
            none
        )
    }
}

#[tonic::async_trait]
impl<S: AgentRegistry> AgentRegistry for Guarded<S> {
    async fn list(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        guarded!(self, request, "AgentRegistry/List", None, None, list, none)
    }
}
