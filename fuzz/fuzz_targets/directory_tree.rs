//! REAPI input trees as encoded `Tree` messages: see
//! `remesh_executor::fuzzing::directory_tree`.
#![no_main]
// No `forbid(unsafe_code)` here: `fuzz_target!` expands to the `no_mangle` entry
// point libFuzzer calls. All logic lives in the executor crate, which forbids it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    remesh_executor::fuzzing::directory_tree(data);
});
