//! The single-hop rule: a request one proxy forwards to another carries
//! `x-remesh-hop: 1`, and a proxy serves such a request from its own backend, never
//! forwarding it again. This bounds every request to one hop even when two nodes'
//! views of the cluster disagree (each thinking the other is less loaded).

use http::HeaderValue;
use http::header::HeaderName;

pub const HOP_HEADER: HeaderName = HeaderName::from_static("x-remesh-hop");

/// Where a request came from, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Straight from a client: may be routed to any member.
    Client,
    /// Forwarded by a peer's proxy: must be served here.
    Forwarded,
}

impl Hop {
    pub fn of(headers: &http::HeaderMap) -> Self {
        if headers.contains_key(HOP_HEADER) {
            Self::Forwarded
        } else {
            Self::Client
        }
    }

    /// Whether a request that arrived this way may be sent to another node.
    pub fn may_forward(self) -> bool {
        self == Self::Client
    }
}

/// Marks a request as forwarded before it goes to a peer.
pub fn mark_forwarded(headers: &mut http::HeaderMap) {
    headers.insert(HOP_HEADER, HeaderValue::from_static("1"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_requests_are_never_forwarded_again() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(Hop::of(&headers), Hop::Client);
        assert!(Hop::of(&headers).may_forward());
        mark_forwarded(&mut headers);
        assert_eq!(Hop::of(&headers), Hop::Forwarded);
        assert!(!Hop::of(&headers).may_forward());
        // Any value counts: a peer must not be able to opt back in with "0".
        headers.insert(HOP_HEADER, HeaderValue::from_static("0"));
        assert!(!Hop::of(&headers).may_forward());
    }
}
