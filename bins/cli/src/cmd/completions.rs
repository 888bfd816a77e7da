//! `idbind completions SHELL`.

use clap::Args;
use clap_complete::Shell;

use crate::exit::Outcome;

/// Arguments of `idbind completions`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  idbind completions bash > /etc/bash_completion.d/idbind\n  idbind completions zsh > \"${fpath[1]}/_idbind\""
)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script to stdout.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<Outcome> {
    let mut cmd = crate::command();
    clap_complete::generate(args.shell, &mut cmd, "idbind", &mut std::io::stdout());
    Ok(Outcome::Ok)
}
