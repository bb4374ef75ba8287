//! `packages`: API and worker in one process. With no configuration it runs on SQLite, a
//! local blobstore and an in-process queue under `./data`.

fn main() -> std::process::ExitCode {
    packages_runtime::main(packages_runtime::Binary::Packages)
}
