#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perimeter_policy::fuzzing::fuzz_host_pattern(data);
});
