// The hello world of benches/footprint.sh with solo-instance: the first launch serves the
// later ones, which print its answer and exit with its code. (`Reply::finish` in one
// call; spelled out so that older checkouts build it too.)
use solo_instance::{Reply, SingleInstance, Start};

fn main() -> Result<std::process::ExitCode, solo_instance::Error> {
    match SingleInstance::new("org.example.Hello")?.start()? {
        Start::Primary(primary) => {
            println!("hello: the first instance");
            for request in primary.requests() {
                let text = format!("hello {:?}\n", request.args());
                request.reply(Reply::ok().with_stdout(text))?;
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Start::Forwarded(reply) => {
            reply.print_output();
            Ok(reply.process_exit_code())
        }
    }
}
