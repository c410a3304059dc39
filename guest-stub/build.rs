fn main() {
    platform::build::link_image("guest-stub", platform::build::Linkage::PositionIndependent);
}
