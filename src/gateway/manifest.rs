//! The manifest: what one session sees — every running server's tools, prompts, resources and
//! resource templates, renamed and filtered — and the routes back to the server that owns each.
//! Rebuilt whenever a child starts, stops or changes its lists; read lock-free on every call.

use std::collections::HashMap;

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use super::naming::NameAllocator;
use super::template::UriTemplate;
use crate::config::Server;
use crate::downstream::Catalog;

/// Where a namespaced name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index of the server's slot.
    pub slot: usize,
    /// The name the child knows it by.
    pub original: String,
}

/// One session's view of all running servers.
#[derive(Debug, Default)]
pub struct Manifest {
    /// Tools as exposed (renamed).
    pub tools: Vec<Tool>,
    /// Prompts as exposed (renamed).
    pub prompts: Vec<Prompt>,
    /// Resources (URIs unchanged).
    pub resources: Vec<Resource>,
    /// Resource templates (URI templates unchanged).
    pub templates: Vec<ResourceTemplate>,
    tool_routes: HashMap<String, Route>,
    prompt_routes: HashMap<String, Route>,
    resource_routes: HashMap<String, usize>,
    template_routes: Vec<(UriTemplate, usize)>,
}

impl Manifest {
    /// Build from the servers that are running, in slot order (sorted by name, so the outcome
    /// of name collisions is deterministic).
    pub fn build<'a>(running: impl IntoIterator<Item = (usize, &'a Server, &'a Catalog)>) -> Self {
        let mut m = Manifest::default();
        let mut tool_names = NameAllocator::default();
        let mut prompt_names = NameAllocator::default();
        for (slot, server, catalog) in running {
            let prefix = server.prefix();
            for tool in &catalog.tools {
                if !server.def.tools.permits(&tool.name) {
                    continue;
                }
                let (name, collided) = tool_names.allocate(&server.name, prefix, &tool.name);
                if collided {
                    tracing::warn!(server = %server.name, tool = %tool.name, exposed = %name, "tool name collides with another server's; exposed under a hashed name");
                }
                let mut exposed = tool.clone();
                exposed.name = name.clone().into();
                m.tool_routes.insert(
                    name,
                    Route {
                        slot,
                        original: tool.name.to_string(),
                    },
                );
                m.tools.push(exposed);
            }
            for prompt in &catalog.prompts {
                let (name, collided) = prompt_names.allocate(&server.name, prefix, &prompt.name);
                if collided {
                    tracing::warn!(server = %server.name, prompt = %prompt.name, exposed = %name, "prompt name collides with another server's; exposed under a hashed name");
                }
                let mut exposed = prompt.clone();
                exposed.name = name.clone();
                m.prompt_routes.insert(
                    name,
                    Route {
                        slot,
                        original: prompt.name.clone(),
                    },
                );
                m.prompts.push(exposed);
            }
            for resource in &catalog.resources {
                if m.resource_routes.contains_key(&resource.uri) {
                    tracing::warn!(server = %server.name, uri = %resource.uri, "resource URI already offered by another server; the first one keeps it");
                    continue;
                }
                m.resource_routes.insert(resource.uri.clone(), slot);
                m.resources.push(resource.clone());
            }
            for template in &catalog.templates {
                m.template_routes
                    .push((UriTemplate::parse(&template.uri_template), slot));
                m.templates.push(template.clone());
            }
        }
        m
    }

    /// The route of an exposed tool name.
    pub fn tool(&self, name: &str) -> Option<&Route> {
        self.tool_routes.get(name)
    }

    /// The route of an exposed prompt name.
    pub fn prompt(&self, name: &str) -> Option<&Route> {
        self.prompt_routes.get(name)
    }

    /// The slot serving a resource URI: one listed exactly, else the first template it matches.
    pub fn resource(&self, uri: &str) -> Option<usize> {
        if let Some(slot) = self.resource_routes.get(uri) {
            return Some(*slot);
        }
        self.template_routes
            .iter()
            .find(|(template, _)| template.matches(uri))
            .map(|(_, slot)| *slot)
    }
}
