//! `perimeter allowlist add|list|update|delete`.

use std::net::IpAddr;

use clap::{Args, Subcommand};
use perimeter_api::model::AllowlistEntry;
use serde_json::{Value, json};

use super::api::{Failure, view};
use super::output::{Table, emit, emit_list, or_dash};
use super::{Connection, Paging, note};

#[derive(Debug, Args)]
pub struct AllowlistArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    cmd: AllowlistCmd,
}

#[derive(Debug, Subcommand)]
enum AllowlistCmd {
    /// Allow a network to reach the cluster's SQL and/or DB Console (UI) ports.
    Add {
        /// Cluster id or name.
        cluster: String,
        /// The network, e.g. 192.168.1.0/24 (a bare address means that one host).
        #[arg(value_parser = parse_cidr)]
        cidr: Cidr,
        /// A label for the entry.
        #[arg(long, default_value = "")]
        name: String,
        /// Allow SQL connections from the network.
        #[arg(long)]
        sql: bool,
        /// Allow DB Console (UI) connections from the network.
        #[arg(long)]
        ui: bool,
    },
    /// List the allowlist.
    List {
        /// Cluster id or name.
        cluster: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Change an existing entry: what is not given is kept. The change reaches the public
    /// ingress listeners when the list reads propagating: false again.
    Update {
        /// Cluster id or name.
        cluster: String,
        /// The entry's network, e.g. 192.168.1.0/24.
        #[arg(value_parser = parse_cidr)]
        cidr: Cidr,
        /// A new label.
        #[arg(long)]
        name: Option<String>,
        /// Allow (true) or refuse (false) SQL connections from the network.
        #[arg(long, value_name = "BOOL")]
        sql: Option<bool>,
        /// Allow (true) or refuse (false) DB Console (UI) connections from the network.
        #[arg(long, value_name = "BOOL")]
        ui: Option<bool>,
    },
    /// Remove an entry.
    Delete {
        /// Cluster id or name.
        cluster: String,
        /// The entry's network, e.g. 192.168.1.0/24.
        #[arg(value_parser = parse_cidr)]
        cidr: Cidr,
    },
}

/// An address and prefix length as the API takes them (`cidr_ip`, `cidr_mask`); the API checks
/// that host bits are zero.
#[derive(Debug, Clone)]
struct Cidr {
    ip: IpAddr,
    mask: u8,
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (ip, mask) = match s.split_once('/') {
        Some((ip, mask)) => (ip, Some(mask)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{s:?} is not a network such as 192.168.1.0/24"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let mask = match mask {
        None => max,
        Some(m) => m
            .parse::<u8>()
            .ok()
            .filter(|m| *m <= max)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
    };
    Ok(Cidr { ip, mask })
}

fn allowlist_table(entries: &[Value]) -> Result<Table, Failure> {
    let mut t = Table::new(&["CIDR", "NAME", "SQL", "UI"]);
    for e in entries {
        let e: AllowlistEntry = view(e, "allowlist entry")?;
        t.row(vec![
            format!("{}/{}", e.cidr_ip, e.cidr_mask),
            or_dash(&e.name),
            e.sql.to_string(),
            e.ui.to_string(),
        ]);
    }
    Ok(t)
}

fn emit_entry(output: super::Output, entry: &Value) -> Result<(), Failure> {
    emit(output, entry, || {
        Ok(allowlist_table(std::slice::from_ref(entry))?.render())
    })
}

pub async fn run(args: AllowlistArgs) -> Result<(), Failure> {
    let api = args.conn.connect()?;
    let output = args.conn.output;
    match args.cmd {
        AllowlistCmd::Add {
            cluster,
            cidr,
            name,
            sql,
            ui,
        } => {
            if !sql && !ui {
                return Err(Failure::Usage(
                    "an entry with neither --sql nor --ui allows nothing: pass --sql, --ui or both"
                        .into(),
                ));
            }
            let id = api.cluster_id(&cluster).await?;
            let body = json!({
                "cidr_ip": cidr.ip.to_string(),
                "cidr_mask": cidr.mask,
                "name": name,
                "sql": sql,
                "ui": ui,
            });
            let entry = api
                .post(&["clusters", &id, "networking", "allowlist"], &body)
                .await?;
            emit_entry(output, &entry)
        }
        AllowlistCmd::List { cluster, paging } => {
            let id = api.cluster_id(&cluster).await?;
            let (entries, last) = api
                .list(
                    &["clusters", &id, "networking", "allowlist"],
                    "allowlist",
                    paging.page_size,
                    &[],
                )
                .await?;
            let propagating = last.get("propagating").and_then(Value::as_bool) == Some(true);
            emit_list(output, entries, allowlist_table)?;
            if propagating {
                note("note: the latest change is still propagating to the cluster's gateways");
            }
            Ok(())
        }
        AllowlistCmd::Update {
            cluster,
            cidr,
            name,
            sql,
            ui,
        } => {
            if name.is_none() && sql.is_none() && ui.is_none() {
                return Err(Failure::Usage(
                    "nothing to change: pass --name, --sql or --ui".into(),
                ));
            }
            let id = api.cluster_id(&cluster).await?;
            let ip = cidr.ip.to_string();
            let mask = cidr.mask.to_string();
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = n.into();
            }
            if let Some(v) = sql {
                body["sql"] = v.into();
            }
            if let Some(v) = ui {
                body["ui"] = v.into();
            }
            let entry = api
                .patch(
                    &["clusters", &id, "networking", "allowlist", &ip, &mask],
                    &body,
                )
                .await?;
            emit_entry(output, &entry)
        }
        AllowlistCmd::Delete { cluster, cidr } => {
            let id = api.cluster_id(&cluster).await?;
            let ip = cidr.ip.to_string();
            let mask = cidr.mask.to_string();
            let entry = api
                .delete(&["clusters", &id, "networking", "allowlist", &ip, &mask])
                .await?;
            emit_entry(output, &entry)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn cidr_splits_into_address_and_prefix() {
        let c = parse_cidr("192.168.1.0/24").unwrap();
        assert_eq!((c.ip.to_string(), c.mask), ("192.168.1.0".into(), 24));
        let c = parse_cidr("2001:db8::/32").unwrap();
        assert_eq!((c.ip.to_string(), c.mask), ("2001:db8::".into(), 32));
        assert_eq!(parse_cidr("10.1.2.3").unwrap().mask, 32);
    }

    #[test]
    fn bad_cidrs_are_refused() {
        for bad in ["10.0.0.0/33", "10.0.0/8", "office", "10.0.0.0/", "::/129"] {
            assert!(parse_cidr(bad).is_err(), "{bad} accepted");
        }
    }
}
