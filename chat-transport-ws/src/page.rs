//! The browser client: a static page (HTML, CSS and one script, embedded in the binary) that the
//! WebSocket listener serves beside the chat endpoint, so `http://HOST:PORT/` is a chat client.
//!
//! This module only knows the files; the HTTP exchange is hyper's (`http.rs`). A page request
//! is not a chat connection: it takes no connection slot and has no login deadline.

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");

/// What the page script reads to find the WebSocket path; replaced with
/// [`WsConfig::path`](crate::WsConfig::path).
const PATH_PLACEHOLDER: &str = "{{WS_PATH}}";

/// The browser's rules for the page: only its own files, no inline script, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' \
                       data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; \
                       frame-ancestors 'none'";

/// A file of the page, or the 404 answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The HTTP status code (200 or 404).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// What a page request for `path` gets, with `ws_path` (the WebSocket path) filled into the page.
pub fn resource(path: &str, ws_path: &str) -> Resource {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let ok = |content_type, body: &str| Resource {
        status: 200,
        content_type,
        body: body.to_owned(),
    };
    match path {
        "/" | "/index.html" => Resource {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: INDEX_HTML.replace(PATH_PLACEHOLDER, &html_attribute(ws_path)),
        },
        "/app.js" => ok("text/javascript; charset=utf-8", APP_JS),
        "/app.css" => ok("text/css; charset=utf-8", APP_CSS),
        _ => Resource {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: "not found; the chat page is at /\n".to_owned(),
        },
    }
}

fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_three_files_and_404_for_the_rest() {
        let index = resource("/", "/chat");
        assert_eq!(index.status, 200);
        assert!(index.content_type.starts_with("text/html"));
        assert!(index.body.contains("/chat"), "the page names the endpoint");
        assert!(!index.body.contains(PATH_PLACEHOLDER));
        assert_eq!(resource("/index.html?x=1", "/chat").status, 200);
        assert!(
            resource("/app.js", "/chat")
                .content_type
                .contains("javascript")
        );
        assert!(
            resource("/app.css", "/chat")
                .content_type
                .starts_with("text/css")
        );
        for path in ["/nope", "/app.js/", "/../Cargo.toml", ""] {
            assert_eq!(resource(path, "/chat").status, 404, "{path:?}");
        }
    }

    #[test]
    fn the_endpoint_path_is_escaped_into_the_page() {
        let index = resource("/", "/a\"<b>&");
        assert!(index.body.contains("/a&quot;&lt;b&gt;&amp;"));
    }
}
