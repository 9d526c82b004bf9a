//! Other hosts through this agent: `GET /api/v1/hosts`, `POST /api/v1/hosts/reload`, and
//! `/api/v1/hosts/NAME/api/v1/…`, which sends the request on to the agent on NAME through the
//! SSH connection this agent holds, with that agent's token, and streams the answer back.
//!
//! Why through this agent: a browser keeps one security model (this agent's session, Host and
//! Origin checks; no second origin, no token in a page), the token of the other host never
//! leaves this agent's memory, one SSH connection serves every client, and "unreachable since"
//! is known in one place. What a request may do there is what its credential may do here: a
//! browser session's request is marked as relayed for a browser (`x-homeport-relayed`), and the
//! agent there gives it a browser's rights, not the token's.

use axum::Json;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use homeport_core::HostUnavailable;
use homeport_types::HostInfo;

use crate::AppState;
use crate::errors::ApiError;
use crate::guard::{Principal, RELAYED_HEADER};

pub async fn list(State(st): State<AppState>) -> Json<Vec<HostInfo>> {
    Json(st.core.hosts())
}

pub async fn reload(State(st): State<AppState>) -> Json<Vec<HostInfo>> {
    Json(st.core.reload_hosts())
}

/// Headers a relayed request keeps: what the body is and what the client accepts. Never the
/// client's credentials, cookies or Origin: the agent there sees this agent's request.
const KEPT: [header::HeaderName; 3] =
    [header::CONTENT_TYPE, header::ACCEPT, header::CONTENT_LENGTH];

pub async fn relay(
    State(st): State<AppState>,
    principal: Option<Extension<Principal>>,
    Path((name, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    // The other agent's API only: not its pages, not its sign-in links, not a further hop.
    let allowed = rest.starts_with("api/v1/")
        && !rest.starts_with("api/v1/hosts")
        && rest != "api/v1/sessions";
    if !allowed {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("/{rest} is not relayed to other hosts"),
        )
        .into_response();
    }
    let client = match st.core.host_client(&name) {
        Ok(c) => c,
        Err(e @ HostUnavailable::Unknown(_)) => {
            return ApiError::new(StatusCode::NOT_FOUND, "unknown_host", e.to_string())
                .into_response();
        }
        Err(e @ HostUnavailable::Down { state, .. }) => {
            let kind = match state {
                homeport_types::HostState::AgentDown => "host_agent_down",
                _ => "host_unreachable",
            };
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, kind, e.to_string())
                .into_response();
        }
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("{}/{rest}{query}", client.base_url());
    let method = req.method().clone();
    let mut out = client
        .http()
        .request(method, &url)
        .bearer_auth(client.token());
    for h in KEPT {
        if let Some(v) = req.headers().get(&h) {
            out = out.header(h, v);
        }
    }
    if !matches!(principal.as_deref(), Some(Principal::Token)) {
        out = out.header(RELAYED_HEADER, "browser");
    }
    let body = req.into_body().into_data_stream();
    out = out.body(reqwest::Body::wrap_stream(body));
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            st.core.host_failed(&name);
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                "host_agent_down",
                format!("the agent on {name} did not answer: {e}"),
            )
            .into_response();
        }
    };
    if resp.status().as_u16() == 401 {
        // That agent refused this one's credential: not the browser's session, which is fine.
        st.core.host_failed(&name);
        return ApiError::new(
            StatusCode::BAD_GATEWAY,
            "host_agent_down",
            format!(
                "the agent on {name} refused this computer's agent (its token changed?); run `homeport host check {name}`"
            ),
        )
        .into_response();
    }
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = axum::http::HeaderMap::new();
    for h in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(v) = resp.headers().get(h.as_str())
            && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
        {
            headers.insert(h, v);
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    (status, headers, axum::body::Body::from_stream(stream)).into_response()
}
