//! [`Plugin`]: describe a plugin binary and serve it.

use std::sync::Arc;

use plugboard_proto::handshake::HANDSHAKE;
use plugboard_proto::plugboard::v1::{
    self as pb, PluginKind, executor_server::ExecutorServer, plugin_server, plugin_server::PluginServer,
    sink_server::SinkServer, source_server::SourceServer,
};
use tonic::service::Routes;

use crate::executor::ExecutorService;
use crate::goplugin::{self, ServeOptions};
use crate::sink::SinkService;
use crate::source::SourceService;
use crate::{Executor, Sink, Source};

/// Largest message a plugin accepts from the host (go-plugin hosts may send
/// up to 2 GiB; tonic's default is 4 MiB).
const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// A plugin binary: its description and the kinds it serves.
pub struct Plugin {
    info: pb::PluginInfo,
    pub(crate) source: Option<Arc<dyn Source>>,
    pub(crate) executor: Option<Arc<dyn Executor>>,
    pub(crate) sink: Option<Arc<dyn Sink>>,
}

impl Plugin {
    /// `name` is what operators write in config; `version` must be semver
    /// (`env!("CARGO_PKG_VERSION")`).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            info: pb::PluginInfo { name: name.into(), version: version.into(), ..Default::default() },
            source: None,
            executor: None,
            sink: None,
        }
    }

    /// One line saying what the plugin does.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.info.description = description.into();
        self
    }

    /// JSON Schema for one instance's config; the host validates configs
    /// against it before starting anything.
    pub fn config_schema(mut self, schema: serde_json::Value) -> Self {
        self.info.config_schema = schema.to_string();
        self
    }

    /// Help text shown for `<prefix> help`.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.info.help = help.into();
        self
    }

    pub fn source(mut self, source: impl Source) -> Self {
        self.source = Some(Arc::new(source));
        self.add_kind(PluginKind::Source);
        self
    }

    /// An executor and the command prefixes it answers by default.
    pub fn executor<I, S>(mut self, executor: impl Executor, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.executor = Some(Arc::new(executor));
        self.info.command_prefixes.extend(prefixes.into_iter().map(Into::into));
        self.add_kind(PluginKind::Executor);
        self
    }

    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sink = Some(Arc::new(sink));
        self.add_kind(PluginKind::Sink);
        self
    }

    fn add_kind(&mut self, kind: PluginKind) {
        if !self.info.kinds.contains(&(kind as i32)) {
            self.info.kinds.push(kind as i32);
        }
    }

    /// What `Describe` answers.
    pub fn info(&self) -> &pb::PluginInfo {
        &self.info
    }

    /// The plugboard gRPC services of this plugin, ready to serve.
    pub fn routes(&self) -> Routes {
        let mut routes = Routes::new(PluginServer::new(DescribeService { info: self.info.clone() }));
        if let Some(source) = &self.source {
            routes = routes.add_service(
                SourceServer::new(SourceService { source: Arc::clone(source) })
                    .max_decoding_message_size(MAX_MESSAGE_SIZE),
            );
        }
        if let Some(executor) = &self.executor {
            routes = routes.add_service(
                ExecutorServer::new(ExecutorService { executor: Arc::clone(executor) })
                    .max_decoding_message_size(MAX_MESSAGE_SIZE),
            );
        }
        if let Some(sink) = &self.sink {
            routes = routes.add_service(
                SinkServer::new(SinkService { sink: Arc::clone(sink) }).max_decoding_message_size(MAX_MESSAGE_SIZE),
            );
        }
        routes
    }

    /// Serves the plugin until the host stops it, then exits the process.
    /// Run by hand (without the host's cookie) it prints go-plugin's
    /// "This binary is a plugin" message and exits 1.
    pub fn serve(self) -> ! {
        goplugin::check_cookie_or_exit(&HANDSHAKE);
        crate::log::init(&self.info.name);
        let options = ServeOptions { reflection: vec![plugboard_proto::FILE_DESCRIPTOR_SET], ..Default::default() };
        goplugin::serve(HANDSHAKE, self.routes(), options)
    }
}

struct DescribeService {
    info: pb::PluginInfo,
}

#[tonic::async_trait]
impl plugin_server::Plugin for DescribeService {
    async fn describe(
        &self,
        _: tonic::Request<pb::DescribeRequest>,
    ) -> Result<tonic::Response<pb::PluginInfo>, tonic::Status> {
        Ok(tonic::Response::new(self.info.clone()))
    }
}
