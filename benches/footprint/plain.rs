// The hello world of benches/footprint.sh without either crate: the baseline.
fn main() {
    println!("hello: the first instance");
}
