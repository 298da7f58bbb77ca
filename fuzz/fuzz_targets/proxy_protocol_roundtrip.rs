#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::proxy_protocol_roundtrip::run(data));
