#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz::package::run(data));
