//! The command line: which scenario, how much load, for how long.

use std::{fmt, str::FromStr, time::Duration};

/// What the simulated users do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `POST /api/tasks` (echo), nothing else.
    PostTasks,
    /// `GET /api/products` pages and single products.
    Products,
    /// Browse the catalog, submit a task, poll it until done.
    Mixed,
    /// Submit a task and poll it until `succeeded`: the time between is the
    /// end-to-end latency.
    E2e,
}

impl Scenario {
    /// Every scenario, as named on the command line.
    pub const ALL: [Self; 4] = [Self::PostTasks, Self::Products, Self::Mixed, Self::E2e];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::PostTasks => "post-tasks",
            Self::Products => "products",
            Self::Mixed => "mixed",
            Self::E2e => "e2e",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = UsageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scenario| scenario.name() == s)
            .ok_or_else(|| UsageError(format!("unknown scenario {s:?}")))
    }
}

/// How the load is shaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// `users` users, each starting its next iteration as soon as the last
    /// ended (the platform's speed sets the rate).
    Closed {
        /// Concurrent users.
        users: usize,
    },
    /// A fixed arrival rate of iterations per second across `users` users
    /// (iterations wait for a free user if the platform falls behind; the
    /// report then shows the rate it reached).
    FixedRate {
        /// Iterations per second.
        rate: usize,
        /// Users that share the rate.
        users: usize,
    },
}

/// Everything the command line sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The scenario.
    pub scenario: Scenario,
    /// Base URL of the gateway (or of a service).
    pub host: String,
    /// Closed loop or fixed rate.
    pub load: Load,
    /// How long to run.
    pub duration: Duration,
    /// Where to write the summary as JSON, if anywhere.
    pub json: Option<String>,
    /// Interval between polls of a task (mixed, e2e).
    pub poll: Duration,
    /// post-tasks: follow one task in this many until done (end-to-end
    /// latency on a sample, without polling every task).
    pub follow_every: Option<u64>,
}

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error)]
#[error("{0}\n\n{USAGE}")]
pub struct UsageError(String);

/// The help text.
pub const USAGE: &str = "\
usage: loadgen <post-tasks|products|mixed|e2e> [options]

  --host URL        where to send requests (default http://localhost:3000)
  --users N         closed loop: N users, each sending its next request as soon
                    as the last one was answered (default 32)
  --rate R          fixed rate: R iterations per second (a POST, a page, a task
                    followed until done), shared by --users users (default:
                    enough users for R at 200 ms each, at least 32)
  --duration D      how long to run: 30s, 2m, ... (default 30s)
  --poll-ms MS      interval between polls of a task (mixed, e2e; default 5)
  --follow-every N  post-tasks: also follow every Nth task until done, for an
                    end-to-end latency sample that barely adds load
  --json FILE       also write the summary as JSON to FILE

A progress line is printed every second; at the end a table of requests per
second, p50/p90/p99/max latency and errors by kind per request type.";

impl Options {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, UsageError> {
        let mut args = args.into_iter();
        let scenario: Scenario = args
            .next()
            .ok_or_else(|| UsageError("which scenario?".into()))?
            .parse()?;
        let mut host = "http://localhost:3000".to_string();
        let (mut users, mut rate) = (None, None);
        let mut duration = Duration::from_secs(30);
        let mut json = None;
        let mut poll = Duration::from_millis(5);
        let mut follow_every = None;
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| UsageError(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--host" => host = value()?.trim_end_matches('/').to_string(),
                "--users" => users = Some(positive(&flag, &value()?)?),
                "--rate" => rate = Some(positive(&flag, &value()?)?),
                "--duration" => {
                    let raw = value()?;
                    duration = humantime::parse_duration(&raw)
                        .map_err(|e| UsageError(format!("--duration {raw}: {e}")))?;
                }
                "--poll-ms" => poll = Duration::from_millis(positive(&flag, &value()?)? as u64),
                "--json" => json = Some(value()?),
                "--follow-every" => follow_every = Some(positive(&flag, &value()?)? as u64),
                "-h" | "--help" => return Err(UsageError("help".into())),
                other => return Err(UsageError(format!("unknown option {other}"))),
            }
        }
        if duration < Duration::from_secs(1) {
            return Err(UsageError("--duration must be at least 1s".into()));
        }
        let load = match rate {
            // Enough users for iterations of up to 200 ms each: a user busy
            // with an earlier iteration delays the next slot, and too few
            // users would measure the load generator instead of the platform.
            Some(rate) => Load::FixedRate {
                rate,
                users: users.unwrap_or((rate / 5).max(32)),
            },
            None => Load::Closed {
                users: users.unwrap_or(32),
            },
        };
        Ok(Self {
            scenario,
            host,
            load,
            duration,
            json,
            poll,
            follow_every,
        })
    }

    /// The number of simulated users.
    pub fn users(&self) -> usize {
        match self.load {
            Load::Closed { users } | Load::FixedRate { users, .. } => users,
        }
    }
}

fn positive(flag: &str, raw: &str) -> Result<usize, UsageError> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| UsageError(format!("{flag} {raw}: a positive integer expected")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Options, UsageError> {
        Options::parse(line.split_whitespace().map(str::to_string))
    }

    #[test]
    fn closed_loop_is_the_default_and_a_rate_makes_it_fixed_rate() {
        let closed = parse("products --duration 5s").unwrap();
        assert_eq!(closed.load, Load::Closed { users: 32 });
        assert_eq!(closed.duration, Duration::from_secs(5));
        let fixed = parse("post-tasks --rate 5000 --host http://gw:3000/").unwrap();
        assert_eq!(
            fixed.load,
            Load::FixedRate {
                rate: 5000,
                users: 1000
            }
        );
        assert_eq!(fixed.host, "http://gw:3000");
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse("juggle").unwrap_err().to_string().contains("juggle"));
        assert!(parse("e2e --users 0")
            .unwrap_err()
            .to_string()
            .contains("--users"));
        assert!(parse("e2e --duration soon")
            .unwrap_err()
            .to_string()
            .contains("soon"));
        assert!(parse("mixed --rate")
            .unwrap_err()
            .to_string()
            .contains("needs a value"));
    }
}
