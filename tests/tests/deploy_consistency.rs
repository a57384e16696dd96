#[test]
fn placeholder() {
    let _ = remesh_proxy::Config::default();
    let _ = remesh_executor::Config::default();
    let _: serde_norway::Value = serde_norway::from_str("a: 1").unwrap();
}
