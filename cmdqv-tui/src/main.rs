static OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cmdqv-ebpf"));
fn main() { println!("{}", OBJ.len()); }
