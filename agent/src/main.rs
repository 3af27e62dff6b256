//! The `muster-agent` binary: all logic lives in the library.
fn main() -> std::process::ExitCode {
    muster_agent::cli::run(clap::Parser::parse())
}
