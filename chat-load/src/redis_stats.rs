//! What a run made a cluster's Redis do: the calls of every command, from `INFO commandstats`
//! read before and after the run.
//!
//! Redis counts a command run by a Lua script as a call of that command too (an `EVALSHA` that
//! appends to a stream counts once as `evalsha` and once as `xadd`), so the total is the work
//! Redis did, and the per-command counts tell round trips (`evalsha`, `xread`, …) from the
//! commands scripts ran. chat-load's own `INFO` is left out.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::ToSocketAddrs;

use redis::ConnectionAddr;
use redis::aio::MultiplexedConnection;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Calls per command name (lower case, as `INFO` writes it).
pub(crate) type Calls = BTreeMap<String, u64>;

/// A connection to Redis that reads its command statistics.
pub(crate) struct RedisStats {
    connection: MultiplexedConnection,
}

impl RedisStats {
    /// Connects to `url`, which must name a loopback address.
    pub(crate) async fn connect(url: &str) -> Result<RedisStats> {
        let client = redis::Client::open(url)?;
        let (host, port) = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            _ => {
                return Err(
                    format!("--redis {url}: only redis://HOST:PORT/DB is supported").into(),
                );
            }
        };
        let loopback = (host.as_str(), port)
            .to_socket_addrs()?
            .all(|addr| addr.ip().is_loopback());
        if !loopback {
            return Err(format!(
                "--redis {url} is not a loopback address; chat-load only drives loopback"
            )
            .into());
        }
        let connection = client.get_multiplexed_async_connection().await?;
        Ok(RedisStats { connection })
    }

    /// Every command's calls so far.
    pub(crate) async fn calls(&mut self) -> Result<Calls> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.connection)
            .await?;
        Ok(parse(&info))
    }
}

/// The calls per command in an `INFO commandstats` reply, without `info` (chat-load's own).
fn parse(info: &str) -> Calls {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// The calls made between `before` and `after`, per command (commands with none left out).
pub(crate) fn delta(before: &Calls, after: &Calls) -> Calls {
    after
        .iter()
        .filter_map(|(name, &calls)| {
            let made = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
            (made > 0).then(|| (name.clone(), made))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commandstats() {
        let before = parse(
            "# Commandstats\r\n\
             cmdstat_evalsha:calls=10,usec=50,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_info:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n",
        );
        assert_eq!(before.get("evalsha"), Some(&10));
        assert_eq!(
            before.get("info"),
            None,
            "chat-load's own INFO is not counted"
        );
        let after = parse(
            "# Commandstats\r\n\
             cmdstat_evalsha:calls=25,usec=50,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_xadd:calls=15,usec=50,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_ping:calls=0,usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_info:calls=4,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n",
        );
        let made = delta(&before, &after);
        assert_eq!(made.get("evalsha"), Some(&15));
        assert_eq!(made.get("xadd"), Some(&15));
        assert_eq!(made.len(), 2);
    }
}
