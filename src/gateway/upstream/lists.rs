//! Lists asked of a streamable HTTP upstream on the caller's pooled session (see
//! `session`), page after page, each reply decoded straight from its text as the list
//! it must be: no untagged enum, no `Value` tree.

use rmcp::service::ServiceError;
use serde_json::json;

use super::session::{Poster, Route};
use super::wire::{
    Head, MAX_REPLY, decode_reply, encode, finish, next_event, read_all, unreadable,
};
use crate::protocol::sse;

/// Sends one request with `params` on the session `session` describes and decodes its result as
/// `R`, straight from the reply (no untagged enum, no `Value` tree). Requests the upstream makes
/// meanwhile are answered (`ping`) or refused; notifications are dropped. `None` when rmcp has
/// not opened the session yet.
pub(crate) async fn request<P, R>(
    route: &Route,
    method: &'static str,
    params: &P,
) -> Option<Result<R, ServiceError>>
where
    P: serde::Serialize + Sync,
    R: serde::de::DeserializeOwned,
{
    let to = Poster::on(route)?;
    let (id, body) = encode(method, params)?;
    let decode = |text: &str| decode_reply::<R>(&id, text);
    Some(
        async {
            let (mut body, is_json) = to.send(body, method, None, Vec::new()).await?;
            if is_json {
                let bytes = read_all(&mut body).await?;
                let text = std::str::from_utf8(&bytes).map_err(|_| unreadable("not UTF-8"))?;
                return decode(text).unwrap_or_else(|| Err(unreadable("not the reply")));
            }
            let mut framer = sse::SseFramer::new(MAX_REPLY);
            loop {
                let event = next_event(&mut framer, &mut body).await?;
                let Some(data) = sse::event_data(&event) else {
                    continue;
                };
                let Ok(head) = serde_json::from_str::<Head>(&data) else {
                    continue;
                };
                match (head.method, head.id) {
                    (None, Some(_)) => {
                        if let Some(done) = decode(&data) {
                            finish(body);
                            return done;
                        }
                    }
                    (Some(m), Some(their)) => {
                        let reply = if m == "ping" {
                            json!({"jsonrpc": "2.0", "id": their, "result": {}})
                        } else {
                            json!({"jsonrpc": "2.0", "id": their, "error": {
                                "code": -32601,
                                "message": "the gateway does not pass requests on while it lists"
                            }})
                        };
                        to.reply(&reply).await;
                    }
                    _ => {}
                }
            }
        }
        .await,
    )
}

/// A list method's result: its items, the cursor of the next page, and how the gateway names
/// and merges the items.
pub(crate) trait Listing: serde::de::DeserializeOwned {
    /// The listed item.
    type Item: Clone + Send + Sync + 'static;
    /// Which of an upstream session's kept lists it is.
    const LISTED: crate::gateway::caller::list_cache::Listed;
    /// The method that lists them.
    const METHOD: &'static str;
    /// The names the items are listed and called by.
    const KIND: crate::engine::NameKind;
    /// This page's items and the next page's cursor.
    fn into_page(self) -> (Vec<Self::Item>, Option<String>);
    /// The one result of all items.
    fn with_all(items: Vec<Self::Item>) -> rmcp::model::ServerResult;
    /// An item's name (or URI).
    fn name(item: &Self::Item) -> &str;
    /// Renames an item.
    fn rename(item: &mut Self::Item, name: String);
    /// Names the UI resource an item refers to (MCP Apps) as the gateway serves it.
    fn present_ui(_item: &mut Self::Item, _ui_uri: &dyn Fn(&str) -> Option<String>) {}
    /// Every item, asked through rmcp's client of the session (`peer`).
    fn through_peer(
        peer: &rmcp::service::Peer<rmcp::RoleClient>,
    ) -> impl std::future::Future<Output = Result<Vec<Self::Item>, ServiceError>> + Send;
}

macro_rules! listing {
    ($t:ident, $item:ty, $method:literal, $kind:ident, $field:ident, $name:ident, $listed:ident,
     $all:ident $(, $ui:path)?) => {
        impl Listing for rmcp::model::$t {
            type Item = $item;
            const LISTED: crate::gateway::caller::list_cache::Listed = crate::gateway::caller::list_cache::Listed::$listed;
            const METHOD: &'static str = $method;
            const KIND: crate::engine::NameKind = crate::engine::NameKind::$kind;
            fn into_page(self) -> (Vec<$item>, Option<String>) {
                (self.$field, self.next_cursor)
            }
            fn with_all(items: Vec<$item>) -> rmcp::model::ServerResult {
                rmcp::model::ServerResult::$t(rmcp::model::$t::with_all_items(items))
            }
            fn name(item: &$item) -> &str {
                &item.$name
            }
            fn rename(item: &mut $item, name: String) {
                item.$name = name.into();
            }
            fn through_peer(
                peer: &rmcp::service::Peer<rmcp::RoleClient>,
            ) -> impl std::future::Future<Output = Result<Vec<$item>, ServiceError>> + Send {
                let peer = peer.clone();
                async move { peer.$all().await }
            }
            $(
                fn present_ui(item: &mut $item, ui_uri: &dyn Fn(&str) -> Option<String>) {
                    $ui(item, ui_uri);
                }
            )?
        }
    };
}

listing!(
    ListToolsResult,
    rmcp::model::Tool,
    "tools/list",
    Tool,
    tools,
    name,
    Tools,
    list_all_tools,
    present_tool_ui
);
listing!(
    ListPromptsResult,
    rmcp::model::Prompt,
    "prompts/list",
    Prompt,
    prompts,
    name,
    Prompts,
    list_all_prompts
);
listing!(
    ListResourcesResult,
    rmcp::model::Resource,
    "resources/list",
    Resource,
    resources,
    uri,
    Resources,
    list_all_resources
);
listing!(
    ListResourceTemplatesResult,
    rmcp::model::ResourceTemplate,
    "resources/templates/list",
    Resource,
    resource_templates,
    uri_template,
    ResourceTemplates,
    list_all_resource_templates
);

/// Every item the upstream lists with `L`, page after page. `None` when rmcp has not opened the
/// session yet.
pub(crate) async fn list_all<L: Listing>(
    route: &Route,
) -> Option<Result<Vec<L::Item>, ServiceError>> {
    /// At most this many pages: an upstream that keeps handing out cursors is cut off.
    const MAX_PAGES: usize = 1_000;
    #[derive(serde::Serialize)]
    struct Page<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        cursor: Option<&'a str>,
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page: L = match request(
            route,
            L::METHOD,
            &Page {
                cursor: cursor.as_deref(),
            },
        )
        .await?
        {
            Ok(page) => page,
            Err(e) => return Some(Err(e)),
        };
        let (page, next) = page.into_page();
        items.extend(page);
        match next {
            Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
            _ => return Some(Ok(items)),
        }
    }
    Some(Err(unreadable("more than 1,000 pages")))
}

/// Names a tool's UI resource (MCP Apps: `_meta.ui.resourceUri`, and the older
/// `_meta["ui/resourceUri"]`) as the gateway lists and serves it (`ui_uri`).
pub(crate) fn present_tool_ui(
    tool: &mut rmcp::model::Tool,
    ui_uri: &dyn Fn(&str) -> Option<String>,
) {
    let Some(meta) = tool.meta.as_mut() else {
        return;
    };
    let rename = |v: &mut serde_json::Value| {
        if let Some(named) = v.as_str().and_then(ui_uri) {
            *v = serde_json::Value::String(named);
        }
    };
    if let Some(uri) = meta
        .0
        .get_mut("ui")
        .and_then(|ui| ui.get_mut("resourceUri"))
    {
        rename(uri);
    }
    if let Some(uri) = meta.0.get_mut("ui/resourceUri") {
        rename(uri);
    }
}
