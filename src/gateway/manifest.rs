//! The manifest: what one session sees — every running server's tools, prompts, resources and
//! resource templates, renamed and filtered — and the routes back to the server that owns each.
//! Rebuilt whenever a child starts, stops or changes its lists; read lock-free on every call.
//!
//! Every entry is scrubbed as it is built: names, titles, descriptions, schemas, annotations,
//! URIs and templates. A tool or prompt name, or a resource URI, that holds a secret is exposed
//! under an alias (the scrubbed name, hashed into a valid one; `lastmile-alias://…` for a URI)
//! and the route maps the alias back to the child's own name, so it stays callable and readable.

use std::collections::HashMap;

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use super::naming::NameAllocator;
use crate::config::Server;
use crate::downstream::Catalog;
use crate::secrets::{SharedRedactor, scrub};
use crate::util::short_hash;

/// Scheme of the alias under which a resource whose URI holds a secret is listed.
pub const ALIAS_SCHEME: &str = "lastmile-alias";

/// Where a namespaced name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index of the server's slot.
    pub slot: usize,
    /// The name the child knows it by.
    pub original: String,
}

/// Where a listed resource URI (or its alias) leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRoute {
    /// Index of the server's slot.
    pub slot: usize,
    /// The URI the child knows, when the client sees an alias instead.
    pub original: Option<String>,
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
    resource_routes: HashMap<String, ResourceRoute>,
    template_routes: Vec<(Vec<TemplatePart>, usize)>,
}

impl Manifest {
    /// Build from the servers that are running, in slot order (sorted by name, so the outcome
    /// of name collisions is deterministic), scrubbing every entry through `redactor`.
    pub fn build<'a>(
        running: impl IntoIterator<Item = (usize, &'a Server, &'a Catalog)>,
        redactor: &SharedRedactor,
    ) -> Self {
        let mut m = Manifest::default();
        let mut tool_names = NameAllocator::default();
        let mut prompt_names = NameAllocator::default();
        for (slot, server, catalog) in running {
            let prefix = server.prefix();
            for tool in &catalog.tools {
                if !server.def.tools.permits(&tool.name) {
                    continue;
                }
                let Some(mut exposed) =
                    CleanEntry::new(redactor, server, "a tool").of(tool.clone())
                else {
                    continue;
                };
                // `exposed.name` is the scrubbed name: the alias is made from it, never from the
                // raw one (whose hash would carry bits of the secret).
                let (name, collided) = tool_names.allocate(&server.name, prefix, &exposed.name);
                if collided {
                    tracing::warn!(server = %server.name, tool = %exposed.name, exposed = %name, "tool name collides with another server's; exposed under a hashed name");
                }
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
                let Some(mut exposed) =
                    CleanEntry::new(redactor, server, "a prompt").of(prompt.clone())
                else {
                    continue;
                };
                let (name, collided) = prompt_names.allocate(&server.name, prefix, &exposed.name);
                if collided {
                    tracing::warn!(server = %server.name, prompt = %exposed.name, exposed = %name, "prompt name collides with another server's; exposed under a hashed name");
                }
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
                let Some(mut exposed) =
                    CleanEntry::new(redactor, server, "a resource").of(resource.clone())
                else {
                    continue;
                };
                let original = if exposed.uri == resource.uri {
                    None
                } else {
                    // The scrubbed URI would not lead back to the child: list an alias.
                    exposed.uri = alias_uri(&server.name, &exposed.uri);
                    Some(resource.uri.clone())
                };
                if m.resource_routes.contains_key(&exposed.uri) {
                    tracing::warn!(server = %server.name, uri = %exposed.uri, "resource URI already offered by another server; the first one keeps it");
                    continue;
                }
                m.resource_routes
                    .insert(exposed.uri.clone(), ResourceRoute { slot, original });
                m.resources.push(exposed);
            }
            for template in &catalog.templates {
                let Some(exposed) =
                    CleanEntry::new(redactor, server, "a resource template").of(template.clone())
                else {
                    continue;
                };
                m.template_routes
                    .push((parse_template(&template.uri_template), slot));
                m.templates.push(exposed);
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

    /// The server serving a resource URI: one listed exactly (or its alias), else the first
    /// template it matches. `original` is set when the child knows the resource by another URI.
    pub fn resource(&self, uri: &str) -> Option<ResourceRoute> {
        if let Some(route) = self.resource_routes.get(uri) {
            return Some(route.clone());
        }
        self.template_routes
            .iter()
            .find(|(parts, _)| template_matches(parts, uri))
            .map(|(_, slot)| ResourceRoute {
                slot: *slot,
                original: None,
            })
    }
}

/// Scrubs one catalog entry; an entry that cannot be scrubbed without breaking its shape is
/// left out of the manifest (fail closed).
struct CleanEntry<'a> {
    redactor: &'a SharedRedactor,
    server: &'a str,
    what: String,
}

impl<'a> CleanEntry<'a> {
    fn new(redactor: &'a SharedRedactor, server: &'a Server, what: &str) -> Self {
        CleanEntry {
            redactor,
            server: &server.name,
            what: what.to_string(),
        }
    }

    fn of<T: serde::Serialize + serde::de::DeserializeOwned>(self, value: T) -> Option<T> {
        match scrub(self.redactor, self.server, value) {
            Ok((v, _)) => Some(v),
            Err(e) => {
                tracing::warn!(server = %self.server, "{} left out of the manifest: {e}", self.what);
                None
            }
        }
    }
}

/// The alias of a resource whose URI holds a secret: stable for the same scrubbed URI.
fn alias_uri(server: &str, scrubbed: &str) -> String {
    format!(
        "{ALIAS_SCHEME}://{server}/{}",
        short_hash(&[server, scrubbed], 16)
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Var,
}

/// Split an RFC 6570 URI template into literals and `{…}` expressions.
fn parse_template(template: &str) -> Vec<TemplatePart> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_string()));
        }
        match rest[open..].find('}') {
            Some(close) => {
                parts.push(TemplatePart::Var);
                rest = &rest[open + close + 1..];
            }
            None => {
                parts.push(TemplatePart::Literal(rest[open..].to_string()));
                rest = "";
            }
        }
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    parts
}

/// Whether `uri` can be produced by the template: literals in order, each variable at least one
/// character.
fn template_matches(parts: &[TemplatePart], uri: &str) -> bool {
    fn go(parts: &[TemplatePart], s: &str) -> bool {
        match parts.split_first() {
            None => s.is_empty(),
            Some((TemplatePart::Literal(lit), rest)) => {
                s.strip_prefix(lit.as_str()).is_some_and(|s| go(rest, s))
            }
            Some((TemplatePart::Var, rest)) => {
                if rest.is_empty() {
                    return !s.is_empty();
                }
                (1..=s.len())
                    .filter(|i| s.is_char_boundary(*i))
                    .any(|i| go(rest, &s[i..]))
            }
        }
    }
    go(parts, uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = parse_template("fixture://{name}/item/{id}");
        assert!(template_matches(&t, "fixture://a/item/7"));
        assert!(!template_matches(&t, "fixture://a/item/"));
        assert!(!template_matches(&t, "other://a/item/7"));
        assert!(template_matches(
            &parse_template("file:///{path}"),
            "file:///etc/hosts"
        ));
        assert!(template_matches(&parse_template("plain://x"), "plain://x"));
    }
}
