fn main() {
    platform::build::link_image("el3-monitor", platform::build::Linkage::Fixed);
}
