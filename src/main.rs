use std::process::ExitCode;

fn main() -> ExitCode {
    perch::cli::main()
}
