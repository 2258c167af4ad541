//! RFC 7662 token introspection for opaque tokens: the authorization server is asked whether a
//! token is active, with this resource's client credentials.

use std::time::Duration;

use serde_json::Value;

use super::issuer::{IssuerKeys, send};

/// How one issuer is asked about opaque tokens.
#[derive(Debug)]
pub(crate) struct Introspector {
    pub(crate) endpoint: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    /// The longest an answer is kept.
    pub(crate) cache: Duration,
}

impl Introspector {
    /// The token's claims if the server says it is active, `None` if it says it is not.
    pub(crate) async fn ask(
        &self,
        issuer: &IssuerKeys,
        token: &str,
        timeout: Duration,
    ) -> Result<Option<Value>, String> {
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => issuer
                .metadata()
                .await?
                .introspection_endpoint
                .clone()
                .ok_or_else(|| {
                    format!(
                        "the metadata of {} names no introspection_endpoint",
                        issuer.issuer
                    )
                })?,
        };
        let request = issuer
            .http
            .post(&endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        let body = send(request, &endpoint, timeout).await?;
        let answer: Value =
            serde_json::from_slice(&body).map_err(|e| format!("{endpoint}: not JSON: {e}"))?;
        match answer.get("active") {
            Some(Value::Bool(true)) => Ok(Some(answer)),
            Some(Value::Bool(false)) => Ok(None),
            _ => Err(format!("{endpoint}: the answer has no boolean \"active\"")),
        }
    }
}
