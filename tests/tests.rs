mod identity_cli;
