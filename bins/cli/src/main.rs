//! `idbind`: see the `idbind_cli` library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    idbind_cli::main_entry().await
}
