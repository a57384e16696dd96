//! Every example configuration shipped under `deploy/` parses as the executor's
//! `Config` and passes its validation, so a copied example never fails at start-up.

use remesh_executor::Config;
use remesh_tests::locations::workspace_root;

fn toml_files(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            toml_files(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "toml") {
            found.push(path);
        }
    }
    Ok(())
}

#[test]
fn every_deploy_toml_is_a_valid_executor_config() -> anyhow::Result<()> {
    let mut files = Vec::new();
    toml_files(&workspace_root().join("deploy"), &mut files)?;
    assert!(
        files
            .iter()
            .any(|path| path.ends_with("deploy/executor.toml")),
        "deploy/executor.toml is missing: {files:?}"
    );
    for path in &files {
        let config = Config::from_file(path).map_err(|error| anyhow::anyhow!("{error}"))?;
        config
            .validate()
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    }
    Ok(())
}

#[test]
fn the_example_executor_config_spells_out_the_defaults() -> anyhow::Result<()> {
    // The example documents the defaults; if a default changes, the example must too.
    let example = Config::from_file(&workspace_root().join("deploy/executor.toml"))?;
    let defaults = Config::default();
    assert_eq!(
        Config {
            data_dir: defaults.data_dir.clone(),
            ..example
        },
        defaults
    );
    Ok(())
}
