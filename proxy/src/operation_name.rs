//! Cluster-wide operation names: `remesh/<node_id>/<backend name>`.
//!
//! The proxy that owns an operation's backend prefixes every name the backend returns,
//! keeping the backend's name verbatim (any bytes a backend chooses, slashes and
//! unicode included), so routing only needs the node id and a name never carries an
//! address a client could make the proxy dial.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The fixed first segment of every name the proxy hands out.
pub const PREFIX: &str = "remesh/";

/// A node's name in the cluster: 1 to 63 ASCII letters, digits, `.`, `_` or `-`.
/// Being slash-free is what makes `remesh/<node_id>/<rest>` parse unambiguously.
/// Shared, not owned: every request's log span and every routing table copies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationNameError {
    #[error("node id {0:?} must be 1 to 63 characters of [A-Za-z0-9._-]")]
    BadNodeId(String),
    #[error("operation name {0:?} does not start with \"remesh/<node>/\"")]
    NotRemesh(String),
    #[error("operation name {0:?} has an empty backend name")]
    EmptyBackendName(String),
}

impl NodeId {
    pub fn new(id: impl Into<String>) -> Result<Self, OperationNameError> {
        let id = id.into();
        let valid = (1..=63).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(id.into()))
        } else {
            Err(OperationNameError::BadNodeId(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `remesh/<node_id>/`, the bytes put in front of each backend name.
    pub fn name_prefix(&self) -> String {
        format!("{PREFIX}{}/", self.0)
    }
}

impl TryFrom<String> for NodeId {
    type Error = OperationNameError;
    fn try_from(id: String) -> Result<Self, Self::Error> {
        Self::new(id)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> Self {
        id.0.to_string()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed cluster-wide operation name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationName {
    pub node_id: NodeId,
    /// The backend's own name, exactly as the backend returned it.
    pub backend_name: String,
}

impl OperationName {
    pub fn new(node_id: NodeId, backend_name: impl Into<String>) -> Self {
        Self {
            node_id,
            backend_name: backend_name.into(),
        }
    }

    pub fn parse(name: &str) -> Result<Self, OperationNameError> {
        let not_remesh = || OperationNameError::NotRemesh(name.to_owned());
        let rest = name.strip_prefix(PREFIX).ok_or_else(not_remesh)?;
        let (node, backend_name) = rest.split_once('/').ok_or_else(not_remesh)?;
        let node_id = NodeId::new(node).map_err(|_| not_remesh())?;
        if backend_name.is_empty() {
            return Err(OperationNameError::EmptyBackendName(name.to_owned()));
        }
        Ok(Self::new(node_id, backend_name))
    }
}

impl fmt::Display for OperationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}/{}", self.node_id, self.backend_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_backend_name_round_trips() {
        let node = NodeId::new("node-a.zone_1").unwrap();
        for backend in [
            "operations/6f1c-2b",
            "a/b/c//d/",
            "remesh/other/x",
            "名前/🚀/ü",
            " spaces and\ttabs ",
            "/",
        ] {
            let name = OperationName::new(node.clone(), backend);
            let text = name.to_string();
            assert_eq!(text, format!("remesh/node-a.zone_1/{backend}"));
            assert_eq!(OperationName::parse(&text), Ok(name));
        }
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            "operations/123",
            "remesh/",
            "remesh/node",
            "remesh//x",
            "remesh/no de/x",
            "Remesh/node/x",
        ] {
            assert!(
                matches!(
                    OperationName::parse(bad),
                    Err(OperationNameError::NotRemesh(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            OperationName::parse("remesh/node/"),
            Err(OperationNameError::EmptyBackendName("remesh/node/".into()))
        );
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(NodeId::new("a").is_ok());
        assert!(NodeId::new("a".repeat(63)).is_ok());
        for bad in ["", "a/b", "a b", "ü", &"a".repeat(64)] {
            assert!(NodeId::new(bad).is_err(), "{bad:?}");
        }
    }
}
