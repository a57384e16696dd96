//! The standalone-proxy values (no executor in the pod) make a proxy config the binary
//! accepts, with a grace period longer than its preStop pause.

use crate::problems::Problems;
use crate::yaml::{at, str_at, u64_at, yaml};
use crate::{STANDALONE, VALUES};

#[test]
fn the_standalone_proxy_values_make_a_valid_proxy() {
    let values = yaml(VALUES);
    let standalone = yaml(STANDALONE);
    let mut problems = Problems::default();
    problems.same(
        &format!("{STANDALONE} executor.enabled"),
        at(&standalone, "executor.enabled").as_bool(),
        Some(false),
    );
    // What _helpers.tpl renders into proxy.toml without an executor, plus proxy.config.
    let mut config = serde_json::json!({
        "node_id": "remesh-0",
        "backend": str_at(&standalone, "backend.address", STANDALONE),
        "backend_mode": str_at(&standalone, "backend.mode", STANDALONE),
        "capacity": u64_at(&standalone, "backend.capacity", STANDALONE),
    });
    for file_values in [(&values, VALUES), (&standalone, STANDALONE)] {
        let (file_values, file) = file_values;
        let extra: serde_json::Value =
            serde_json::to_value(at(file_values, "proxy.config")).unwrap();
        for (key, value) in extra.as_object().into_iter().flatten() {
            config[key] = value.clone();
        }
        problems.check(at(file_values, "proxy.config").is_mapping(), || {
            format!("{file}: proxy.config must be a map")
        });
    }
    match serde_json::from_value::<remesh_proxy::Config>(config) {
        Ok(config) => {
            if let Err(error) = config.validate() {
                problems.push(format!("{STANDALONE}: the proxy would refuse it: {error}"));
            }
        }
        Err(error) => problems.push(format!("{STANDALONE}: not a proxy config: {error}")),
    }
    let grace = at(&standalone, "terminationGracePeriodSeconds")
        .as_u64()
        .unwrap_or_else(|| u64_at(&values, "terminationGracePeriodSeconds", VALUES));
    problems.check(
        grace > u64_at(&values, "proxy.preStopSleepSeconds", VALUES),
        || format!("{STANDALONE}: terminationGracePeriodSeconds must exceed the proxy's preStop"),
    );
    problems.finish();
}
