//! Reading the deployment YAML files and looking values up by dotted path.

use serde::Deserialize;
use serde_norway::Value;

use crate::read;

/// Every document of a (multi-document) YAML file; empty documents are skipped.
pub fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let value =
            Value::deserialize(document).unwrap_or_else(|error| panic!("{relative}: {error}"));
        if !value.is_null() {
            documents.push(value);
        }
    }
    documents
}

pub fn yaml(relative: &str) -> Value {
    let mut documents = yaml_documents(relative);
    assert_eq!(documents.len(), 1, "{relative}: expected one YAML document");
    documents.remove(0)
}

/// `at(v, "a.b.c")`: nested mapping lookup, `Null` when any step is missing.
pub fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .try_fold(value, |current, key| current.get(key))
        .unwrap_or(&NULL)
}

pub fn u64_at(value: &Value, path: &str, file: &str) -> u64 {
    at(value, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{file}: {path} is not a number"))
}

pub fn str_at<'a>(value: &'a Value, path: &str, file: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{file}: {path} is not a string"))
}

/// The element named `name` of a list of `{name: …}` mappings.
pub fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_sequence()?
        .iter()
        .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| match item {
                    Value::String(text) => text.clone(),
                    other => serde_norway::to_string(other).unwrap().trim().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}
