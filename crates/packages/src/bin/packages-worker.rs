//! `packages-worker`: consumes jobs from RabbitMQ; run as many as you like.

fn main() -> std::process::ExitCode {
    packages_runtime::main(packages_runtime::Binary::Worker)
}
