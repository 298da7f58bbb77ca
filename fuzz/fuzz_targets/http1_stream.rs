#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::http1_stream::run(data));
