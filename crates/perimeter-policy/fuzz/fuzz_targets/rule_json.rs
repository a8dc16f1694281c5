#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perimeter_policy::fuzzing::fuzz_rule_json(data);
});
