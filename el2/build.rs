fn main() {
    platform::build::link_image("el2", platform::build::Linkage::PositionIndependent);
}
