//! The TLS, mesh TLS and gossip keyring sections the chart renders into `proxy.toml`
//! parse and validate as the proxy's config, and meshTls makes a node that may start.

use crate::problems::Problems;
use crate::yaml::{str_at, u64_at, yaml};
use crate::{CHART, VALUES};

#[test]
fn tls_and_keyring_sections_fit_the_proxy_config() {
    // What _helpers.tpl adds to proxy.toml when tls, meshTls and gossipKeyring are on,
    // with the files where the StatefulSet mounts the Secrets: each must parse and
    // validate as the proxy's configuration.
    let values = yaml(VALUES);
    let tls = str_at(&values, "tls.mountPath", VALUES);
    let mesh = str_at(&values, "meshTls.mountPath", VALUES);
    let keyring = str_at(&values, "gossipKeyring.mountPath", VALUES);
    let sections = [
        (
            "gossip_keyring",
            format!("gossip_keyring = \"{keyring}/keyring\"\n"),
        ),
        (
            "tls",
            format!(
                "[tls]\ncert_file = \"{tls}/tls.crt\"\nkey_file = \"{tls}/tls.key\"\n\
                 client_auth = \"required\"\nclient_ca_file = \"{tls}/ca.crt\"\n"
            ),
        ),
        (
            "mesh_tls",
            format!(
                "[mesh_tls]\nca_file = \"{mesh}/ca.crt\"\ncert_file = \"{mesh}/tls.crt\"\n\
                 key_file = \"{mesh}/tls.key\"\n"
            ),
        ),
    ];
    let mut problems = Problems::default();
    for (field, section) in sections {
        let text = format!("node_id = \"remesh-0\"\n{section}");
        match toml::from_str::<remesh_proxy::Config>(&text) {
            Err(error) => problems.push(format!(
                "{CHART}/templates/_helpers.tpl renders `{field}` the proxy refuses: {error}"
            )),
            Ok(config) => {
                if let Err(error) = config.validate() {
                    problems.push(format!("{CHART}/templates/_helpers.tpl `{field}`: {error}"));
                }
            }
        }
    }
    problems.finish();
}

#[test]
fn mesh_tls_values_make_a_node_that_may_start() {
    // What _helpers.tpl renders with meshTls on (a peer port with [mesh_tls]),
    // with and without tls: the proxy must accept it at start, not only parse it.
    // tls alone is refused, as values.yaml says.
    let values = yaml(VALUES);
    let peer = u64_at(&values, "proxy.ports.peer", VALUES);
    let tls = str_at(&values, "tls.mountPath", VALUES);
    let mesh = str_at(&values, "meshTls.mountPath", VALUES);
    let keyring = str_at(&values, "gossipKeyring.mountPath", VALUES);
    let top = format!("node_id = \"remesh-0\"\ngossip_keyring = \"{keyring}/keyring\"\n");
    let peer_listen = format!("peer_listen = \"0.0.0.0:{peer}\"\n");
    let tls_section = format!(
        "[tls]\ncert_file = \"{tls}/tls.crt\"\nkey_file = \"{tls}/tls.key\"\nclient_auth = \"off\"\n"
    );
    let mesh_section = format!(
        "[mesh_tls]\nca_file = \"{mesh}/ca.crt\"\ncert_file = \"{mesh}/tls.crt\"\n\
         key_file = \"{mesh}/tls.key\"\n"
    );
    let mut problems = Problems::default();
    let proxy = remesh_proxy::Config::default();
    problems.check(
        ![proxy.listen.port(), proxy.admin_listen.port()].contains(&(peer as u16)),
        || format!("{VALUES}: proxy.ports.peer {peer} collides with another proxy port"),
    );
    for (what, text, may_start) in [
        ("meshTls", format!("{top}{peer_listen}{mesh_section}"), true),
        (
            "tls and meshTls",
            format!("{top}{peer_listen}{tls_section}{mesh_section}"),
            true,
        ),
        ("tls alone", format!("{top}{tls_section}"), false),
    ] {
        let outcome = toml::from_str::<remesh_proxy::Config>(&text)
            .map_err(|error| error.to_string())
            .and_then(|config| {
                config.validate().map_err(|error| error.to_string())?;
                config
                    .check_security_at_start()
                    .map_err(|error| error.to_string())
            });
        problems.check(outcome.is_ok() == may_start, || {
            format!("{CHART}/templates/_helpers.tpl with {what}: {outcome:?}")
        });
    }
    problems.finish();
}
