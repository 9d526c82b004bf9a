//! The few pages the agent writes itself, outside the dashboard: signing in, a browser without a
//! session, and a sign-in link that no longer works. Each says what happened and what to do, in
//! the dashboard's look (one stylesheet, `/page.css`: the policy allows no inline style).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet of these pages, in light and dark.
pub const PAGE_CSS: &str = r#":root { color-scheme: light dark; --bg: #f5f6f8; --panel: #fff; --text: #1c2330; --muted: #5f6b7d;
  --border: #d6dae1; --accent: #2b6cb0; --code: #f0f2f5; --warn: #b54708; }
@media (prefers-color-scheme: dark) { :root { --bg: #15181e; --panel: #1f242d; --text: #e3e7ee; --muted: #98a2b3;
  --border: #323946; --accent: #6ea8e8; --code: #171b22; --warn: #e0a43a; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, Ubuntu, Cantarell, sans-serif;
  background: var(--bg); color: var(--text); }
main { max-width: 36rem; margin: 10vh auto 2rem; padding: 1.25rem 1.5rem; background: var(--panel);
  border: 1px solid var(--border); border-radius: 10px; }
@media (max-width: 40rem) { main { margin: 1rem 0.75rem; padding: 1rem; } }
.brand { color: var(--muted); font-weight: 600; margin: 0 0 0.75rem; }
.brand span { color: var(--accent); }
h1 { font-size: 1.3rem; margin: 0 0 0.75rem; }
p, li { overflow-wrap: anywhere; }
ul { padding-left: 1.2rem; }
li { margin: 0.3rem 0; }
code { font-family: ui-monospace, 'SF Mono', 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: 0.88em;
  background: var(--code); padding: 0.05rem 0.3rem; border-radius: 4px; }
a { color: var(--accent); }
.why { color: var(--muted); font-size: 0.9rem; }
"#;

/// How to get a new sign-in link, as a list.
const HOW_TO_SIGN_IN: &str = "<p>To sign in, do one of these on this computer:</p><ul>\
<li>run <code>homeport dashboard</code> in a terminal: it opens a one-time sign-in link in your browser;</li>\
<li>or choose <strong>Open dashboard in browser</strong> in the Homeport tray menu.</li></ul>";

/// A whole page: `title` (plain text) and `body` (HTML written here, never from a request).
pub fn page(title: &str, body: &str, head: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width, initial-scale=1\"><meta name=color-scheme content=\"light dark\">\
<meta name=referrer content=no-referrer>{head}<title>Homeport · {title}</title>\
<link rel=stylesheet href=/page.css></head><body><main>\
<p class=brand><span aria-hidden=true>⚓</span> Homeport</p><h1>{title}</h1>{body}</main></body></html>"
    )
}

/// A browser without a session asked for the dashboard.
pub fn signed_out() -> String {
    page(
        "Sign in to Homeport",
        &format!(
            "<p>This browser has no session with the Homeport agent, so the dashboard cannot show \
             anything yet.</p>{HOW_TO_SIGN_IN}<p class=why>Sessions end after an hour without use, \
             after twelve hours in all, and when the agent restarts. A link works only once, and \
             only for the user who made it.</p>"
        ),
        "",
    )
}

/// A sign-in link that was used already, or has expired.
pub fn link_spent() -> String {
    page(
        "This sign-in link no longer works",
        &format!(
            "<p>A sign-in link works once, for two minutes: this one was used already (perhaps by \
             this browser, a moment ago) or has expired. Nothing was changed.</p>{HOW_TO_SIGN_IN}"
        ),
        "",
    )
}

/// A sign-in link opened by another user of this computer.
pub fn wrong_user() -> String {
    page(
        "This sign-in link is not yours",
        "<p>A sign-in link works only for the user of this computer who made it, and this \
         browser runs as someone else. The link is still good for its owner.</p>\
         <p>Sign in as yourself: run <code>homeport dashboard</code> in your own terminal.</p>",
        "",
    )
}

/// The answer to a redeemed link: hands the session's secret to `/login.js`, which stores it
/// and opens the dashboard.
pub fn signing_in(secret: &str) -> String {
    page(
        "Signing in…",
        "<p>You are signed in. <a href=\"/\">Open the dashboard</a> if it does not open by itself.</p>",
        &format!(
            "<meta name=\"homeport-session\" content=\"{secret}\"><script src=\"/login.js\"></script>"
        ),
    )
}

/// An HTML page with `status`, not cached.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, crate::CSP),
        ],
        body,
    )
        .into_response()
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE_CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_say_what_to_do_and_load_only_our_own_files() {
        for p in [signed_out(), link_spent(), wrong_user(), signing_in("abc")] {
            assert!(p.starts_with("<!doctype html>"));
            assert!(p.contains("/page.css"));
            assert!(!p.contains("style="), "the policy allows no inline style");
            assert!(
                !p.contains("<script>"),
                "the policy allows no inline script"
            );
        }
        assert!(signed_out().contains("homeport dashboard"));
        assert!(link_spent().contains("Open dashboard in browser"));
    }
}
