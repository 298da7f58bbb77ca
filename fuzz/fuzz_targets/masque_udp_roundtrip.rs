#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::masque_udp_roundtrip::run(data));
