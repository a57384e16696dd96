//! Every YAML and TOML file under `deploy/` parses, and every TOML config passes its
//! binary's validation.

use std::path::{Path, PathBuf};

use crate::problems::Problems;
use crate::root;
use crate::yaml::yaml_documents;

#[test]
fn every_deploy_file_parses() {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // Templates are Go templates, not YAML.
            if path.is_dir() && !path.ends_with("templates") {
                walk(&path, found);
            } else if path.is_file() {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("deploy"), &mut files);
    let mut problems = Problems::default();
    let (mut yaml_files, mut toml_files) = (0, 0);
    for path in &files {
        let relative = path.strip_prefix(root()).unwrap().to_str().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("yaml" | "yml") => {
                yaml_files += 1;
                problems.check(!yaml_documents(relative).is_empty(), || {
                    format!("{relative}: no YAML document")
                });
            }
            Some("toml") => {
                toml_files += 1;
                let outcome = if name.starts_with("proxy") {
                    remesh_proxy::Config::from_file(path)
                        .and_then(|config| config.validate())
                        .map_err(|error| error.to_string())
                } else if name.starts_with("executor") {
                    remesh_executor::Config::from_file(path)
                        .and_then(|config| config.validate())
                        .map_err(|error| error.to_string())
                } else {
                    Err("name it proxy*.toml or executor*.toml so its binary is known".into())
                };
                problems.check(outcome.is_ok(), || {
                    format!("{relative}: {}", outcome.unwrap_err())
                });
            }
            _ => {}
        }
    }
    problems.check(yaml_files >= 4 && toml_files >= 2, || {
        format!("deploy/: found only {yaml_files} YAML and {toml_files} TOML files")
    });
    problems.finish();
}
