//! The production `Plugins`: the registry says which plugin serves a type (pinned per job),
//! the runtime runs it.

use super::{PluginGroup, Plugins, Resolved, Runner};
use crate::plugins::{LoadedPlugin, PluginEvent, PluginRegistry};
use crate::runtime::{Execution, JobInput, JobServices, Runtime};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::broadcast;

pub struct RegistryPlugins {
    registry: PluginRegistry,
}

impl RegistryPlugins {
    pub fn new(registry: PluginRegistry) -> Self {
        Self { registry }
    }
}

struct PluginRunner {
    runtime: Runtime,
    plugin: Arc<LoadedPlugin>,
}

#[async_trait::async_trait]
impl Runner for PluginRunner {
    async fn run(&self, input: JobInput, services: Arc<dyn JobServices>) -> Execution {
        self.runtime
            .execute(&self.plugin.code, input, services)
            .await
    }
}

impl Plugins for RegistryPlugins {
    fn groups(&self) -> Vec<PluginGroup> {
        let mut by_name: BTreeMap<String, PluginGroup> = BTreeMap::new();
        for t in self.registry.types() {
            if let Some(p) = self.registry.for_type(&t) {
                by_name
                    .entry(p.name.clone())
                    .or_insert_with(|| PluginGroup {
                        name: p.name.clone(),
                        types: Vec::new(),
                        max_concurrency: p.manifest.max_concurrency,
                    })
                    .types
                    .push(t);
            }
        }
        by_name.into_values().collect()
    }

    fn resolve(&self, job_type: &str) -> Option<Resolved> {
        let plugin = self.registry.for_type(job_type)?;
        Some(Resolved {
            plugin: plugin.name.clone(),
            version: plugin.version.clone(),
            max_concurrency: plugin.manifest.max_concurrency,
            retry: plugin.manifest.retry.clone(),
            timeout: plugin
                .manifest
                .timeout
                .unwrap_or(self.registry.runtime().config().default_timeout),
            runner: Arc::new(PluginRunner {
                runtime: self.registry.runtime().clone(),
                plugin,
            }),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<PluginEvent> {
        self.registry.subscribe()
    }
}
