#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz::pci_ecam::run(data));
