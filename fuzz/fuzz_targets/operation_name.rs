//! Operation names (`remesh/<node_id>/<backend name>`): see
//! `remesh_proxy::fuzzing::operation_name`.
#![no_main]
// No `forbid(unsafe_code)` here: `fuzz_target!` expands to the `no_mangle` entry
// point libFuzzer calls. All logic lives in the proxy crate, which forbids it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    remesh_proxy::fuzzing::operation_name(data);
});
