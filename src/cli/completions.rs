//! `lastmile completions SHELL`: print a completion script for bash, zsh, fish or PowerShell.

use clap::Args;
use clap_complete::Shell;

use super::error::CliError;

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish or powershell.
    shell: CompletionShell,
}

/// The shells lastmile writes completions for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

pub(crate) fn run(args: CompletionsArgs) -> Result<(), CliError> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
        CompletionShell::Powershell => Shell::PowerShell,
    };
    let mut cmd = super::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "lastmile", &mut out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut super::super::command(), "lastmile", &mut buf);
            let text = String::from_utf8(buf).unwrap();
            for sub in ["init", "import", "doctor", "tools", "call", "servers"] {
                assert!(text.contains(sub), "{shell:?} lacks {sub}");
            }
        }
    }
}
