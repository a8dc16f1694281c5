//! Client subcommands over the REST API (being written).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {}

pub async fn run(cmd: ClientCommand) -> Result<ExitCode> {
    match cmd {}
}
