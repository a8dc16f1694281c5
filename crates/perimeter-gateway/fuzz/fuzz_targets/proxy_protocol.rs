#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perimeter_gateway::fuzzing::fuzz_proxy_protocol(data);
});
