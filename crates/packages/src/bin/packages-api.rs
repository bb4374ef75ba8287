//! `packages-api`: the HTTP API; jobs go to RabbitMQ for `packages-worker` processes.

fn main() -> std::process::ExitCode {
    packages_runtime::main(packages_runtime::Binary::Api)
}
