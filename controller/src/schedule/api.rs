//! `faultline.v1.ExperimentService` with schedules: [`ExperimentApi`] for everything, except
//! that Start on a template arms its schedule instead of running it, and Abort wakes the
//! scheduler so an aborted template's schedule is disarmed at once.

use faultline_proto::v1::experiment_service_server::ExperimentService;
use faultline_proto::v1::{
    self, AbortExperimentRequest, CreateExperimentRequest, DeleteExperimentRequest,
    DeleteExperimentResponse, GetExperimentRequest, GetExperimentResponse, ListExperimentsRequest,
    ListExperimentsResponse, ResumeRequest, ResumeResponse, StartExperimentRequest, StopAllRequest,
    StopAllResponse, ValidateRequest, ValidateResponse, WatchExperimentRequest,
};
use faultline_proto::v1::{ListAuditRequest, ListAuditResponse};
use tonic::{Request, Response, Status};

use super::{ArmError, Scheduler};
use crate::api::ExperimentApi;
use crate::store::StoreError;

/// The experiment service the controller serves.
#[derive(Clone, Debug)]
pub struct ScheduledExperimentApi {
    inner: ExperimentApi,
    scheduler: Scheduler,
}

impl ScheduledExperimentApi {
    pub fn new(inner: ExperimentApi, scheduler: Scheduler) -> Self {
        Self { inner, scheduler }
    }
}

fn arm_status(e: ArmError) -> Status {
    match e {
        ArmError::Store(StoreError::Closed) => Status::unavailable(e.to_string()),
        ArmError::Store(StoreError::NotFound { .. }) => Status::not_found(e.to_string()),
        ArmError::Store(_) => Status::internal(e.to_string()),
        ArmError::AlreadyArmed { .. }
        | ArmError::NotPending { .. }
        | ArmError::NeverFires { .. } => Status::failed_precondition(e.to_string()),
    }
}

#[tonic::async_trait]
impl ExperimentService for ScheduledExperimentApi {
    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        self.inner.validate(request).await
    }

    async fn create(
        &self,
        request: Request<CreateExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        self.inner.create(request).await
    }

    /// A template's schedule is armed (the template stays pending); any other experiment
    /// starts now.
    async fn start(
        &self,
        request: Request<StartExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        let name = request.get_ref().name.clone();
        // Get names a missing experiment (or a missing name) the way the API always does.
        let get = || GetExperimentRequest { name: name.clone() };
        self.inner.get(Request::new(get())).await?;
        let stored = self
            .scheduler
            .store
            .get(name.clone())
            .await
            .map_err(|e| arm_status(e.into()))?;
        if !self.scheduler.arm(&stored).await.map_err(arm_status)? {
            return self.inner.start(request).await;
        }
        let got = self.inner.get(Request::new(get())).await?.into_inner();
        got.experiment
            .map(Response::new)
            .ok_or_else(|| Status::internal("Get answered without the experiment"))
    }

    async fn list(
        &self,
        request: Request<ListExperimentsRequest>,
    ) -> Result<Response<ListExperimentsResponse>, Status> {
        self.inner.list(request).await
    }

    async fn get(
        &self,
        request: Request<GetExperimentRequest>,
    ) -> Result<Response<GetExperimentResponse>, Status> {
        self.inner.get(request).await
    }

    type WatchStream = <ExperimentApi as ExperimentService>::WatchStream;

    async fn watch(
        &self,
        request: Request<WatchExperimentRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.inner.watch(request).await
    }

    /// Aborting a template also disarms its schedule (the scheduler notices it is no longer
    /// pending); runs already started are not touched.
    async fn abort(
        &self,
        request: Request<AbortExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        let aborted = self.inner.abort(request).await?;
        self.scheduler.wake();
        Ok(aborted)
    }

    async fn delete(
        &self,
        request: Request<DeleteExperimentRequest>,
    ) -> Result<Response<DeleteExperimentResponse>, Status> {
        self.inner.delete(request).await
    }

    async fn stop_all(
        &self,
        request: Request<StopAllRequest>,
    ) -> Result<Response<StopAllResponse>, Status> {
        self.inner.stop_all(request).await
    }

    async fn resume(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        self.inner.resume(request).await
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        self.inner.list_audit(request).await
    }
}
