//! `kvpeer-rust-plugin`: serves `kvpeer.v1.KeyValue` from memory with the
//! SDK's generic go-plugin server, so the Go `kvpeer-host` (hashicorp/go-plugin
//! 1.0.1) can run it — plainly and with AutoMTLS.

use std::collections::HashMap;
use std::sync::Mutex;

use plugboard_kvpeer::{FILE_DESCRIPTOR_SET, HANDSHAKE, pb};
use plugboard_sdk::goplugin::{self, ServeOptions};
use tonic::service::Routes;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Store {
    state: Mutex<(HashMap<String, Vec<u8>>, u64)>,
}

#[tonic::async_trait]
impl pb::key_value_server::KeyValue for Store {
    async fn read(&self, request: Request<pb::ReadRequest>) -> Result<Response<pb::ReadReply>, Status> {
        let key = request.into_inner().key;
        let state = self.state.lock().map_err(|_| Status::internal("store poisoned"))?;
        let value = state.0.get(&key).cloned();
        tracing::debug!(key, found = value.is_some(), "read");
        Ok(Response::new(pb::ReadReply { found: value.is_some(), value: value.unwrap_or_default() }))
    }

    async fn write(&self, request: Request<pb::WriteRequest>) -> Result<Response<pb::WriteReply>, Status> {
        let req = request.into_inner();
        let mut state = self.state.lock().map_err(|_| Status::internal("store poisoned"))?;
        state.0.insert(req.key.clone(), req.value);
        state.1 += 1;
        tracing::info!(key = req.key, revision = state.1, "write");
        Ok(Response::new(pb::WriteReply { revision: state.1 }))
    }

    async fn info(&self, _: Request<pb::InfoRequest>) -> Result<Response<pb::InfoReply>, Status> {
        Ok(Response::new(pb::InfoReply { pid: i64::from(std::process::id()), implementation: "rust-kvpeer".into() }))
    }
}

fn main() {
    goplugin::check_cookie_or_exit(&HANDSHAKE);
    plugboard_sdk::log::init("kvpeer");
    let routes = Routes::new(pb::key_value_server::KeyValueServer::new(Store::default()));
    let options = ServeOptions { reflection: vec![FILE_DESCRIPTOR_SET], ..Default::default() };
    goplugin::serve(HANDSHAKE, routes, options)
}
