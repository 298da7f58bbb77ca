#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::sniff_quic::run(data));
