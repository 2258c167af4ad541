//! The tasks extension (SEP-2663) through the gateway: a `tools/call` that an upstream answers
//! with a task gives the caller a task id of the gateway's (see `task_ids`), and `tasks/get`,
//! `tasks/update` and `tasks/cancel` with that id go to the upstream that created the task,
//! under its own id, on the caller's session with it.
//!
//! Only the caller that created a task can reach it, and only on a request that may still use
//! its server: anything else is answered as an unknown task, word for word. `tasks/list`
//! (removed from the extension) and the v1 `tasks/result` are unknown methods.

use rmcp::RoleServer;
use rmcp::model::{
    CancelTaskParams, CancelTaskRequest, ClientRequest, CreateTaskResult, ErrorData, GetTaskParams,
    GetTaskRequest, GetTaskResult, ServerResult, UpdateTaskParams, UpdateTaskRequest,
};
use rmcp::service::{RequestContext, ServiceError};

use super::GatewayHandler;
use super::aggregate::{Asked, Upstreams};
use crate::gateway::caller::Caller;
use crate::gateway::caller::task_ids::Bound;
use crate::gateway::upstream::client::{Asking, options};
use crate::gateway::upstream::tool_call::forward_meta;

fn unknown() -> ErrorData {
    ErrorData::invalid_params("unknown task", None)
}

impl GatewayHandler {
    /// The task an upstream of `server` created for `caller`, under the gateway's id.
    pub(crate) fn adopt_task(
        &self,
        caller: &Caller,
        server: &str,
        mut created: CreateTaskResult,
    ) -> CreateTaskResult {
        let upstream = std::mem::take(&mut created.task.task_id);
        created.task.task_id = self.shared.tasks.bind(
            caller.digest.map(|d| d.0),
            server,
            upstream,
            created.task.ttl_ms,
        );
        created
    }

    /// Where the task `id` runs, if it is this request's caller's and its server is one the
    /// request may use.
    fn task_of(&self, ctx: &RequestContext<RoleServer>, id: &str) -> Result<Bound, ErrorData> {
        let caller = Caller::from_context(ctx);
        self.shared
            .tasks
            .find(id, caller.digest.map(|d| d.0))
            .filter(|bound| {
                Upstreams::of(&self.shared, caller.clone())
                    .servers()
                    .iter()
                    .any(|(_, name)| *name == bound.server)
            })
            .ok_or_else(unknown)
    }

    /// Sends `request` for the task behind `bound` to its upstream (`asked` says what it is,
    /// see [`GatewayHandler::traced`]).
    async fn to_task(
        &self,
        ctx: &RequestContext<RoleServer>,
        bound: &Bound,
        asked: Asked,
        request: ClientRequest,
    ) -> Result<ServerResult, ErrorData> {
        self.one(ctx, &bound.server, asked, |peer, _| async move {
            let asking = Asking {
                tasks: true,
                log_level: None,
            };
            peer.send_request_with_option(request, options(&peer, asking))
                .await?
                .await_response()
                .await
        })
        .await
    }

    pub(crate) async fn serve_get_task(
        &self,
        mut params: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let bound = self.task_of(&ctx, &params.task_id)?;
        let id = std::mem::replace(&mut params.task_id, bound.upstream.clone());
        params.meta = forward_meta(params.meta.take());
        let asked = Self::traced(&ctx, "tasks/get", &mut params.meta);
        let request = ClientRequest::GetTaskRequest(GetTaskRequest::new(params));
        match self.to_task(&ctx, &bound, asked, request).await? {
            ServerResult::GetTaskResult(mut result) => {
                self.shared.tasks.retime(&id, result.task.task.ttl_ms);
                result.task.task.task_id = id;
                Ok(result)
            }
            _ => Err(super::aggregate::upstream_error(
                &bound.server,
                crate::gateway::upstream::pool::Failure::Service(ServiceError::UnexpectedResponse),
            )),
        }
    }

    pub(crate) async fn serve_update_task(
        &self,
        mut params: UpdateTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let bound = self.task_of(&ctx, &params.task_id)?;
        params.task_id.clone_from(&bound.upstream);
        params.meta = forward_meta(params.meta.take());
        let asked = Self::traced(&ctx, "tasks/update", &mut params.meta);
        let request = ClientRequest::UpdateTaskRequest(UpdateTaskRequest::new(params));
        self.acknowledged(&ctx, &bound, asked, request).await
    }

    pub(crate) async fn serve_cancel_task(
        &self,
        mut params: CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let bound = self.task_of(&ctx, &params.task_id)?;
        params.task_id.clone_from(&bound.upstream);
        params.meta = forward_meta(params.meta.take());
        let asked = Self::traced(&ctx, "tasks/cancel", &mut params.meta);
        let request = ClientRequest::CancelTaskRequest(CancelTaskRequest::new(params));
        self.acknowledged(&ctx, &bound, asked, request).await
    }

    async fn acknowledged(
        &self,
        ctx: &RequestContext<RoleServer>,
        bound: &Bound,
        asked: Asked,
        request: ClientRequest,
    ) -> Result<(), ErrorData> {
        match self.to_task(ctx, bound, asked, request).await? {
            ServerResult::TaskAckResult(_) | ServerResult::EmptyResult(_) => Ok(()),
            _ => Err(super::aggregate::upstream_error(
                &bound.server,
                crate::gateway::upstream::pool::Failure::Service(ServiceError::UnexpectedResponse),
            )),
        }
    }
}
