#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::h1_session::run(data));
