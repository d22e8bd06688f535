//! `placement-ctl`: the operator's command-line tool over PD's HTTP API (so it works against
//! PD too for what PD shares). [`Command`] is what the binary parses; [`run`] sends the
//! request and returns the text to print, tables from [`format`]. Being a tool, it reports
//! failures with `anyhow`.

pub mod format;

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use reqwest::{Client, Method, Response};
use serde_json::{json, Value};

/// One `placement-ctl` command.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// List stores (tombstones included) with state, labels and counts.
    Stores,
    /// List regions with their leader, voters and learners (store ids).
    Regions,
    /// Drain, restore or purge stores.
    #[command(subcommand)]
    Store(StoreCommand),
    /// List the enabled schedulers.
    Schedulers,
    /// Add or remove a scheduler.
    #[command(subcommand)]
    Scheduler(SchedulerCommand),
    /// Show or change the config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// How many zones, hosts and stores can be lost without any region losing its majority.
    FaultTolerance,
    /// List the placement members with the leader and their health.
    Members,
    /// Remove a member or hand it leadership.
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum MemberCommand {
    /// Remove a member from the group (not the leader: transfer first).
    Delete { name: String },
    /// Make the named member the leader.
    Leader { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum StoreCommand {
    /// Start draining a store (Offline); it becomes Tombstone once empty.
    Drain {
        id: u64,
        /// Drain even if fewer Up stores than max-replicas would remain.
        #[arg(long)]
        force: bool,
    },
    /// Cancel a drain (Offline back to Up).
    Up { id: u64 },
    /// Forget every tombstone store.
    RemoveTombstone,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum SchedulerCommand {
    /// `add evict-leader <store>`, or `add balance-leader` / `add balance-region`.
    Add { kind: String, store: Option<u64> },
    /// `remove evict-leader <store>`, or `remove balance-leader` / `remove balance-region`.
    Remove { kind: String, store: Option<u64> },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ConfigCommand {
    /// Show the replication and schedule config.
    Show,
    /// Set `max-replicas`, `max-store-down-time`, `location-labels` or `isolation-level`.
    Set { key: String, value: String },
}

/// The PD name of a scheduler kind (`evict-leader` → `evict-leader-scheduler`).
fn scheduler_name(kind: &str) -> String {
    let kind = kind.trim_end_matches("-scheduler");
    format!("{kind}-scheduler")
}

async fn send(client: &Client, method: Method, url: String, body: Option<Value>) -> Result<Value> {
    let mut req = client.request(method.clone(), &url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp: Response = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let msg = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        bail!("{method} {url}: {status}: {msg}");
    }
    Ok(value)
}

/// Runs `command` against the placement (or PD) at `pd` (`http://host:port`) and returns
/// what to print.
pub async fn run(pd: &str, command: &Command) -> Result<String> {
    let client = Client::new();
    let api = format!("{}/pd/api/v1", pd.trim_end_matches('/'));
    let get = |path: &str| send(&client, Method::GET, format!("{api}{path}"), None);
    let done = |v: Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned) + "\n";
    Ok(match command {
        Command::Stores => format::stores(&get("/stores?state=0&state=1&state=2").await?),
        Command::Regions => format::regions(&get("/regions").await?),
        Command::Schedulers => format::schedulers(&get("/schedulers").await?),
        Command::FaultTolerance => format::fault_tolerance(&get("/fault-tolerance").await?),
        Command::Members => format::members(&get("/members").await?, &get("/health").await?),
        Command::Member(MemberCommand::Delete { name }) => {
            let url = format!("{api}/members/name/{name}");
            done(send(&client, Method::DELETE, url, None).await?)
        }
        Command::Member(MemberCommand::Leader { name }) => {
            let url = format!("{api}/leader/transfer/{name}");
            done(send(&client, Method::POST, url, None).await?)
        }
        Command::Config(ConfigCommand::Show) => format::config(&get("/config").await?),
        Command::Config(ConfigCommand::Set { key, value }) => {
            let v = match value.parse::<u64>() {
                Ok(n) if key == "max-replicas" => json!(n),
                _ => json!(value),
            };
            let url = format!("{api}/config");
            done(send(&client, Method::POST, url, Some(json!({ key: v }))).await?)
        }
        Command::Store(StoreCommand::Drain { id, force }) => {
            let url = format!(
                "{api}/store/{id}{}",
                if *force { "?force=true" } else { "" }
            );
            done(send(&client, Method::DELETE, url, None).await?)
        }
        Command::Store(StoreCommand::Up { id }) => {
            let url = format!("{api}/store/{id}/state?state=Up");
            done(send(&client, Method::POST, url, None).await?)
        }
        Command::Store(StoreCommand::RemoveTombstone) => {
            let url = format!("{api}/stores/remove-tombstone");
            done(send(&client, Method::DELETE, url, None).await?)
        }
        Command::Scheduler(SchedulerCommand::Add { kind, store }) => {
            let body = json!({ "name": scheduler_name(kind), "store_id": store });
            let url = format!("{api}/schedulers");
            done(send(&client, Method::POST, url, Some(body)).await?)
        }
        Command::Scheduler(SchedulerCommand::Remove { kind, store }) => {
            let name = match store {
                Some(id) => format!("{}-{id}", scheduler_name(kind)),
                None => scheduler_name(kind),
            };
            let url = format!("{api}/schedulers/{name}");
            done(send(&client, Method::DELETE, url, None).await?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_names() {
        assert_eq!(scheduler_name("evict-leader"), "evict-leader-scheduler");
        assert_eq!(
            scheduler_name("evict-leader-scheduler"),
            "evict-leader-scheduler"
        );
    }
}
