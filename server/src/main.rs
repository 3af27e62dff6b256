//! The `musterd` binary: all logic lives in the library.
fn main() -> std::process::ExitCode {
    muster_server::cli::run(clap::Parser::parse())
}
