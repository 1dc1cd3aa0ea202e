// The hello world of benches/footprint.sh with the single-instance crate: it can only tell
// whether another instance runs (it forwards nothing).
fn main() {
    let instance = single_instance::SingleInstance::new("org.example.Hello").unwrap();
    if instance.is_single() {
        println!("hello: the first instance");
    } else {
        println!("hello: another instance runs");
    }
}
