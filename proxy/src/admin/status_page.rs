//! The status page at `/`: one self-contained HTML document (inline CSS and JS,
//! nothing fetched from elsewhere) that polls `/cluster` and draws the members, their
//! load, this node's forwards per peer and the recent membership events.
//!
//! The page is static; every number on it comes from `/cluster`, so the JSON stays the
//! one source of truth and the page cannot show what a script would not see.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

/// The page, compiled into the binary so that a node needs no files to show it.
pub const STATUS_PAGE_HTML: &str = include_str!("status_page.html");

/// Only inline script and style, and requests to this same port: the page works on
/// an isolated network and cannot be made to load anything from outside.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub fn response() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(STATUS_PAGE_HTML.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_polls_cluster_and_loads_nothing_from_elsewhere() {
        assert!(STATUS_PAGE_HTML.contains("fetch('/cluster'"));
        for external in ["http://", "https://", "//fonts", "src=\"/"] {
            assert!(
                !STATUS_PAGE_HTML.contains(external),
                "the page refers to {external}"
            );
        }
        let response = response();
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8"
        );
        assert!(response.headers().contains_key("content-security-policy"));
    }
}
