#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| metriccare_tests::fuzzing::event(data));
