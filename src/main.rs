use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = certop::cli::Cli::parse();
    match certop::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
