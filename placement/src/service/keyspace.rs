//! `keyspacepb.Keyspace`: `LoadKeyspace` (what API V2 clients call right after connecting,
//! reading only `keyspace.id`) and `GetAllKeyspaces`. `DEFAULT` always exists with id 0; an
//! unknown name answers `ENTRY_NOT_FOUND` in the header, as PD does.

use std::sync::Arc;

use proto::keyspacepb::keyspace_server::Keyspace;
use proto::keyspacepb::{
    GetAllKeyspacesRequest, GetAllKeyspacesResponse, LoadKeyspaceRequest, LoadKeyspaceResponse,
};
use tonic::{Request, Response, Status};

use super::Call;
use crate::error::Error;
use crate::state::Placement;

/// The `keyspacepb.Keyspace` service.
#[derive(Clone)]
pub struct KeyspaceService {
    state: Arc<Placement>,
}

impl KeyspaceService {
    pub fn new(state: Arc<Placement>) -> Self {
        KeyspaceService { state }
    }
}

#[tonic::async_trait]
impl Keyspace for KeyspaceService {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn load_keyspace(
        &self,
        request: Request<LoadKeyspaceRequest>,
    ) -> Result<Response<LoadKeyspaceResponse>, Status> {
        let call = Call::new(&self.state, "LoadKeyspace");
        call.check_header(request.get_ref().header.as_ref())?;
        let name = &request.get_ref().name;
        let found = self.state.view().keyspaces().by_name(name).cloned();
        let result = found
            .map(|k| LoadKeyspaceResponse {
                keyspace: Some(k),
                ..Default::default()
            })
            .ok_or_else(|| Error::KeyspaceNotFound(name.clone()));
        call.reply(result)
    }

    #[tracing::instrument(skip_all, fields(start_id = request.get_ref().start_id, limit = request.get_ref().limit))]
    async fn get_all_keyspaces(
        &self,
        request: Request<GetAllKeyspacesRequest>,
    ) -> Result<Response<GetAllKeyspacesResponse>, Status> {
        let call = Call::new(&self.state, "GetAllKeyspaces");
        call.check_header(request.get_ref().header.as_ref())?;
        let req = request.get_ref();
        let keyspaces = self
            .state
            .view()
            .keyspaces()
            .list(req.start_id, req.limit as usize);
        call.reply(Ok(GetAllKeyspacesResponse {
            keyspaces,
            ..Default::default()
        }))
    }
}
