//! Filtering list replies down to what one grant may use.

use serde_json::{Map, Value};

use crate::engine::{Attribution, Catalog, Grant, NameIndex, NameKind};
use crate::protocol::{Method, RequestId};

/// What to filter in one list reply, and for whom.
///
/// The permission layer builds one per list request; it is public so the same rewrite can be
/// used (and measured) outside a tower stack.
#[derive(Clone, Debug)]
pub struct ListFilter {
    pub(crate) grant: Grant,
    pub(crate) method: Method,
    pub(crate) id: RequestId,
    /// For the mount and, with unprefixed names, the name index as it is when the reply
    /// arrives (an aggregating service updates it while answering the list).
    pub(crate) gatekeeper: crate::Gatekeeper,
}

impl ListFilter {
    /// A filter for the reply to request `id` of a list `method`, for `grant`.
    #[must_use]
    pub fn new(
        grant: Grant,
        method: Method,
        id: RequestId,
        gatekeeper: &crate::Gatekeeper,
    ) -> Self {
        Self {
            grant,
            method,
            id,
            gatekeeper: gatekeeper.clone(),
        }
    }

    /// If `message` is the JSON-RPC reply to our request, filters it (items outside the grant
    /// removed, tool schemas pruned to `allowed_params`, `cacheScope` made private) and returns
    /// `true`.
    pub fn apply(&self, message: &mut Value) -> bool {
        let Some(obj) = message.as_object_mut() else {
            return false;
        };
        if !obj.get("id").is_some_and(|id| self.id.matches(id)) {
            return false;
        }
        if let Some(result) = obj.get_mut("result").and_then(Value::as_object_mut) {
            self.filter_result(result);
        }
        true
    }

    fn filter_result(&self, result: &mut Map<String, Value>) {
        let (key, field, kind) = match self.method {
            Method::ToolsList => ("tools", "name", NameKind::Tool),
            Method::PromptsList => ("prompts", "name", NameKind::Prompt),
            Method::ResourcesList => ("resources", "uri", NameKind::Resource),
            Method::ResourceTemplatesList => {
                ("resourceTemplates", "uriTemplate", NameKind::Resource)
            }
            _ => return,
        };
        let catalog = self.grant.catalog();
        let index = self.gatekeeper.name_index();
        match result.get_mut(key) {
            Some(Value::Array(items)) => {
                items.retain_mut(|item| self.keep(catalog, &index, kind, field, item));
            }
            // Fail closed on a shape we do not understand.
            _ => {
                result.insert(key.to_owned(), Value::Array(Vec::new()));
            }
        }
        // A list cut for one caller must never be cached as shared.
        if let Some(scope) = result.get_mut("cacheScope")
            && scope.as_str() == Some("public")
        {
            *scope = Value::String("private".to_owned());
        }
    }

    fn keep(
        &self,
        catalog: &Catalog,
        index: &NameIndex,
        kind: NameKind,
        field: &str,
        item: &mut Value,
    ) -> bool {
        let Some(name) = item.get(field).and_then(Value::as_str) else {
            return false;
        };
        let Some(Attribution::Server(server, bare)) =
            catalog.attribute(self.gatekeeper.mount(), Some(index), kind, name)
        else {
            return false;
        };
        let allowed = match kind {
            NameKind::Tool => self.grant.check_tool(server, bare).is_ok(),
            _ => self.grant.check_server(server).is_ok(),
        };
        if allowed && kind == NameKind::Tool {
            let params = catalog
                .server(server)
                .allowed_params(bare)
                .map(<[Box<str>]>::to_vec);
            if let Some(params) = params {
                prune_schema(item, &params);
            }
        }
        allowed
    }
}

/// Removes from a tool's `inputSchema` every top-level property it may not be called with.
pub(crate) fn prune_schema(tool: &mut Value, allowed: &[Box<str>]) {
    let Some(schema) = tool.get_mut("inputSchema").and_then(Value::as_object_mut) else {
        return;
    };
    let ok = |k: &str| allowed.iter().any(|a| **a == *k);
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.retain(|k, _| ok(k));
    }
    if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| r.as_str().is_some_and(ok));
    }
    // Nothing outside the allowed names may be offered, not even through open schemas.
    schema.insert("additionalProperties".to_owned(), Value::Bool(false));
}
