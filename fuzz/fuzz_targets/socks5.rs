#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::socks5::run(data));
