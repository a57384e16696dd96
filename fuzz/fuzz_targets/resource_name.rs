//! ByteStream resource names (read and write forms): see
//! `remesh_executor::fuzzing::resource_name`.
#![no_main]
// No `forbid(unsafe_code)` here: `fuzz_target!` expands to the `no_mangle` entry
// point libFuzzer calls. All logic lives in the executor crate, which forbids it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    remesh_executor::fuzzing::resource_name(data);
});
