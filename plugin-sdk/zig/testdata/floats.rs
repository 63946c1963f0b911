// Generates floats.txt: "<f64 bits in hex> <Rust {:?} text>" lines, the reference for
// collector.zig's json.formatF64. Regenerate: rustc -O floats.rs -o /tmp/floats && /tmp/floats > floats.txt
// Emits "hexbits rust_debug" lines for the Zig SDK's float-format test.
fn main() {
    let mut v: Vec<f64> = vec![0.0, -0.0, 1.0, -1.0, 512.0, 209.767, 1084.745, 0.1, 0.2, 0.30000000000000004,
        1e-5, 1e-4, 1.5e-4, 9.999999999999999e-5, 0.0001, 0.001, 1e15, 9999999999999998.0, 1e16, 1.5e16, 1e17, 1e21, 1e22, 1e23,
        123456789012345680.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
        f64::EPSILON, std::f64::consts::PI, 1000.898535, 6500439584116.0, 4294967296.0, 9007199254740993.0, 100.0, 1e100, 1.25e-7];
    for e in -330..=310 { v.push(format!("1e{e}").parse().unwrap()); if e % 3 == 0 { v.push(format!("-3.7e{e}").parse().unwrap()); } }
    for i in 0..100 { v.push(i as f64 / 8.0); v.push(i as f64 * 1e14); }
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for _ in 0..400 {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        let f = f64::from_bits(x);
        if f.is_finite() { v.push(f); }
        let g = ((x >> 11) % 100000000) as f64 / 1000.0; v.push(g);
    }
    // Non-finite values are written NaN/Infinity by the SDKs, not as Rust prints them.
    for f in v.into_iter().filter(|f| f.is_finite()) { println!("{:016x} {:?}", f.to_bits(), f); }
}
