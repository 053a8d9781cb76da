//! Loading [`crate::Config`] from flags, environment and file.
//!
//! Precedence, highest first: command-line flags, `SIO_*` environment
//! variables, the TOML file given by `--config` (or `SIO_CONFIG`), the
//! defaults. Lists are comma-separated everywhere (`--nats a,b`,
//! `SIO_NATS=a,b`); booleans take `--flag`, `--flag=false` or
//! `SIO_FLAG=true`.
//!
//! Over 400 lines: 140 of them are the unit tests of the precedence rules.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::config::{Config, LogFormat, Transport};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad flags, or `--help` / `--version` (which are not failures).
    #[error("{0}")]
    Cli(#[from] clap::Error),
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("invalid {option}: {message}")]
    Invalid {
        option: &'static str,
        message: String,
    },
}

impl ConfigError {
    /// Prints the error (or the help) and gives the exit code: success for
    /// `--help` and `--version`, failure for everything else.
    pub fn report(self) -> ExitCode {
        match self {
            Self::Cli(e) => {
                let _ = e.print();
                ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
            }
            other => {
                eprintln!("sio-gateway: {other}");
                ExitCode::from(2)
            }
        }
    }
}

/// A comma-separated list.
#[derive(Debug, Clone)]
struct List<T>(Vec<T>);

impl<T: FromStr> FromStr for List<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<T>().map_err(|e| format!("{v:?}: {e}")))
            .collect::<Result<_, _>>()
            .map(List)
    }
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| "expected polling or websocket".into())
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

/// How a flag's value lands in the config field.
trait Into2<T> {
    fn into2(self) -> T;
}

macro_rules! same {
    ($($t:ty),*) => {$(impl Into2<$t> for $t { fn into2(self) -> $t { self } })*};
}
same!(SocketAddr, String, u64, u32, usize, bool, LogFormat);

impl<T> Into2<Option<T>> for T {
    fn into2(self) -> Option<T> {
        Some(self)
    }
}

impl<T> Into2<Vec<T>> for List<T> {
    fn into2(self) -> Vec<T> {
        self.0
    }
}

macro_rules! options {
    ($($field:ident: $ty:ty => $help:literal,)*) => {
        /// Socket.IO gateway for sio-nats: terminates Engine.IO polling and
        /// websocket for stock Socket.IO clients and carries their events to
        /// workers over NATS (or the in-process bus when no NATS URL is given).
        #[derive(Debug, Parser)]
        #[command(name = "sio-gateway", version, args_override_self = true)]
        struct Args {
            /// TOML file with any of the options below (kebab-case keys).
            #[arg(long, value_name = "FILE")]
            config: Option<PathBuf>,
            $(
                #[arg(long, help = $help)]
                $field: Option<$ty>,
            )*
        }

        impl Args {
            const FIELDS: &[&str] = &["config", $(stringify!($field)),*];

            fn apply(self, config: &mut Config) {
                $(if let Some(value) = self.$field {
                    config.$field = value.into2();
                })*
            }
        }
    };
}

options! {
    listen: SocketAddr => "Address to listen on [default: 0.0.0.0:3000]",
    ops_listen: SocketAddr => "Address serving /health, /ready and /metrics alone, outside the client connection cap",
    path: String => "Path of the Engine.IO endpoint, with leading and trailing slash [default: /socket.io/]",
    nats: List<String> => "NATS server URLs, comma-separated; none runs on the in-process bus",
    nats_name: String => "Connection name shown by NATS monitoring [default: sio-gateway]",
    nats_token: String => "NATS token",
    nats_user: String => "NATS user (with --nats-password)",
    nats_password: String => "NATS password",
    nats_nkey: String => "NATS nkey seed",
    nats_creds: PathBuf => "NATS credentials file (JWT + nkey)",
    nats_tls: bool => "Require TLS to NATS [default: false]",
    nats_tls_ca: PathBuf => "Extra root certificate (PEM) to trust for NATS",
    nats_tls_cert: PathBuf => "Client certificate (PEM) for NATS mutual TLS",
    nats_tls_key: PathBuf => "Client key (PEM) for NATS mutual TLS",
    prefix: String => "Subject prefix, so several apps can share one NATS [default: sio]",
    ping_interval: u64 => "Milliseconds between server pings (pingInterval) [default: 25000]",
    ping_timeout: u64 => "Milliseconds to wait for a pong (pingTimeout) [default: 20000]",
    upgrade_timeout: u64 => "Milliseconds a transport upgrade may take (upgradeTimeout) [default: 10000]",
    max_http_buffer_size: usize => "Largest message or polling body in bytes (maxHttpBufferSize) [default: 1000000]",
    connect_timeout: u64 => "Milliseconds a client may stay without joining a namespace (connectTimeout) [default: 45000]",
    transports: List<Transport> => "Allowed transports (transports) [default: polling,websocket]",
    allow_upgrades: bool => "Let polling clients upgrade to websocket (allowUpgrades) [default: true]",
    cors_origins: List<String> => "CORS: allowed origins, `*` for any; none sends no CORS headers",
    cors_credentials: bool => "CORS: allow credentials [default: false]",
    cors_methods: List<String> => "CORS: allowed methods [default: GET,POST]",
    cookie: bool => "Set the session cookie, for cookie-based sticky load balancing [default: false]",
    cookie_name: String => "Session cookie name [default: io]",
    cookie_path: String => "Session cookie path [default: /]",
    cookie_http_only: bool => "Session cookie HttpOnly [default: true]",
    cookie_same_site: String => "Session cookie SameSite: Strict, Lax or None [default: Lax]",
    trust_proxy: bool => "Take the client address from X-Forwarded-For / Forwarded [default: false]",
    namespaces: List<String> => "Namespaces clients may join [default: /]",
    namespace_patterns: List<String> => "Dynamic namespace patterns, `*` matching any run of characters",
    authorize: List<String> => "Namespaces whose connects workers must accept on P.conn.<ns>",
    connect_request_timeout: u64 => "Milliseconds to wait for a worker to accept a connect [default: 5000]",
    ack_timeout: u64 => "Milliseconds to wait for an ack a handler makes after returning, or for an unordered event's ack [default: 10000]",
    event_lease: u64 => "Milliseconds a worker may hold an event silently before it goes to another worker [default: 5000]",
    event_attempts: u32 => "Most leases of one event that may run out (each hands it to another worker) before its client gets an error ack [default: 3]",
    event_timeout: u64 => "Milliseconds an event waits for the bus to come back before its client gets an error ack [default: 10000]",
    event_queue: usize => "Most events of one socket waiting their turn; past it, error acks [default: 1024]",
    event_queue_bytes: usize => "Most bytes of one socket's waiting events [default: 1048576]",
    max_connections: usize => "Most concurrent client sessions (and, with recovery, sockets waiting for their clients); past it, 503 [default: 100000]",
    max_tcp_connections: usize => "Most open TCP connections; past it, closed at once [default: 120000]",
    max_connections_per_address: usize => "Most connections one client address holds (sessions behind --trust-proxy); 0 for none [default: 0]",
    connections_per_second_per_address: u32 => "Most new connections per second from one client address (sessions behind --trust-proxy); 0 for none [default: 0]",
    header_timeout: u64 => "Milliseconds a request's headers may take to arrive [default: 10000]",
    idle_timeout: u64 => "Milliseconds a connection may idle between requests, or a request take; more than ping-interval + ping-timeout [default: 50000]",
    backlog: u32 => "Listen backlog [default: 1024]",
    send_queue_packets: usize => "Most packets queued for one client before it is cut [default: 1024]",
    send_queue_bytes: usize => "Most bytes queued for one client before it is cut [default: 4194304]",
    ws_read_buffer: usize => "Websocket read buffer per connection, bytes [default: 1024]",
    ws_write_buffer: usize => "Websocket write buffer per connection, bytes [default: 4096]",
    max_attachments: usize => "Most binary attachments in one packet [default: 64]",
    max_namespaces: usize => "Most namespaces one client may join at once [default: 32]",
    connection_state_recovery: bool => "Connection state recovery: a client back within max-disconnection-duration keeps its socket id, rooms and data and gets what it missed (connectionStateRecovery) [default: false]",
    max_disconnection_duration: u64 => "Milliseconds a disconnected socket stays recoverable (maxDisconnectionDuration) [default: 120000]",
    skip_middlewares: bool => "A recovered socket is not asked of the workers' on_connect again (skipMiddlewares) [default: true]",
    recovery_packets: usize => "Most packets kept for one socket to recover [default: 1024]",
    recovery_bytes: usize => "Most bytes of packets kept for one socket to recover [default: 1048576]",
    recovery_memory: usize => "Most bytes of packets kept for all sockets to recover; past it, sockets that miss one are not recoverable [default: 67108864]",
    jetstream_replicas: usize => "Copies of the recovery state (the sockets' records, the emits) in a NATS cluster's JetStream [default: 1]",
    jetstream_max_bytes: u64 => "Most bytes of emits JetStream keeps for recoveries after a gateway died (the oldest go first) [default: 1073741824]",
    heartbeat_interval: u64 => "Milliseconds between presence heartbeats on P.hb [default: 5000]",
    drain_timeout: u64 => "Milliseconds a graceful drain may take [default: 10000]",
    log_format: LogFormat => "Log format: text or json [default: text]",
    log_level: String => "Log filter such as info or sio_gateway=debug; RUST_LOG wins [default: info]",
}

/// Booleans: `--cookie` alone means `--cookie=true`.
const FLAGS: &[&str] = &[
    "nats_tls",
    "allow_upgrades",
    "cors_credentials",
    "cookie",
    "cookie_http_only",
    "trust_proxy",
    "connection_state_recovery",
    "skip_middlewares",
];

fn env_name(field: &str) -> String {
    format!("SIO_{}", field.to_ascii_uppercase())
}

impl Config {
    /// Loads the configuration from `args` (the first is the program
    /// name), the process environment and the file `--config` names.
    pub fn load<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::load_with_env(args, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the environment given as a lookup function.
    pub fn load_with_env<I, T>(
        args: I,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut args = args.into_iter().map(Into::into);
        let program = args.next().unwrap_or_else(|| "sio-gateway".into());
        // Environment values go first as flags, so that real flags, which
        // come later, override them.
        let from_env = Args::FIELDS.iter().filter_map(|field| {
            let value = env(&env_name(field))?;
            Some(OsString::from(format!(
                "--{}={value}",
                field.replace('_', "-")
            )))
        });
        let argv: Vec<OsString> = std::iter::once(program)
            .chain(from_env)
            .chain(args)
            .collect();
        let command = Args::command().mut_args(|arg| {
            let field = arg.get_id().as_str().replace('-', "_");
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let arg = arg.help(format!("{help} [env: {}]", env_name(&field)));
            match FLAGS.contains(&field.as_str()) {
                true => arg.num_args(0..=1).default_missing_value("true"),
                false => arg,
            }
        });
        let args = Args::from_arg_matches(&command.try_get_matches_from(argv)?)?;
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        args.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &PathBuf) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
            path: path.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.clone(),
            message: e.to_string(),
        })
    }

    /// Checks values no type can rule out.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |option, message: &str| {
            Err(ConfigError::Invalid {
                option,
                message: message.into(),
            })
        };
        if !(self.path.starts_with('/') && self.path.ends_with('/')) {
            return invalid("path", "must start and end with /");
        }
        if self.ping_interval == 0 || self.ping_timeout == 0 {
            return invalid("ping-interval/ping-timeout", "must be positive");
        }
        if self.idle_timeout <= self.ping_interval.saturating_add(self.ping_timeout) {
            return invalid(
                "idle-timeout",
                "must exceed ping-interval + ping-timeout (a long-poll lasts up to ping-interval)",
            );
        }
        if self.header_timeout == 0 {
            return invalid("header-timeout", "must be positive");
        }
        // The lease travels as u32 milliseconds; a worker renews it every
        // third, so below 3 ms it could not.
        if !(3..=u64::from(u32::MAX)).contains(&self.event_lease) {
            return invalid("event-lease", "must be between 3 and 4294967295");
        }
        if self.event_attempts == 0 || self.event_queue == 0 {
            return invalid("event-attempts/event-queue", "must be positive");
        }
        if self.transports.is_empty() {
            return invalid("transports", "at least one is needed");
        }
        if !["Strict", "Lax", "None"].contains(&self.cookie_same_site.as_str()) {
            return invalid("cookie-same-site", "expected Strict, Lax or None");
        }
        if let Some(ns) = self.namespaces.iter().find(|n| !n.starts_with('/')) {
            return invalid("namespaces", &format!("{ns:?} does not start with /"));
        }
        if self.max_http_buffer_size == 0
            || self.send_queue_packets == 0
            || self.send_queue_bytes == 0
        {
            return invalid("limits", "buffer sizes and queue bounds must be positive");
        }
        if let Err(e) = sio_protocol::subject::Subjects::new(&self.prefix) {
            return invalid("prefix", &e.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let argv = std::iter::once("sio-gateway").chain(args.iter().copied());
        Config::load_with_env(argv, |k| env.get(k).cloned())
    }

    fn file(contents: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sio-gateway-test-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn defaults() {
        assert_eq!(load(&[], &[]).unwrap(), Config::default());
    }

    #[test]
    fn each_source() {
        let c = load(
            &[
                "--ping-interval",
                "100",
                "--nats",
                "nats://a:1,nats://b:2",
                "--cookie",
            ],
            &[],
        )
        .unwrap();
        assert_eq!((c.ping_interval, c.cookie), (100, true));
        assert_eq!(c.nats, ["nats://a:1", "nats://b:2"]);
        let c = load(
            &[],
            &[
                ("SIO_PING_TIMEOUT", "7"),
                ("SIO_TRANSPORTS", "websocket"),
                ("SIO_COOKIE", "true"),
            ],
        )
        .unwrap();
        assert_eq!((c.ping_timeout, c.cookie), (7, true));
        assert_eq!(c.transports, [Transport::Websocket]);
        let path = file(
            "listen = \"127.0.0.1:1\"\nnamespaces = [\"/\", \"/chat\"]\nlog-format = \"json\"\n",
        );
        let c = load(&["--config", path.to_str().unwrap()], &[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.namespaces, ["/", "/chat"]);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let path = file("ping-interval = 1\nping-timeout = 1\nupgrade-timeout = 1\n");
        let p = path.to_str().unwrap();
        let env = [
            ("SIO_PING_INTERVAL", "2"),
            ("SIO_PING_TIMEOUT", "2"),
            ("SIO_CONFIG", p),
        ];
        let c = load(&["--ping-interval", "3"], &env).unwrap();
        assert_eq!(c.ping_interval, 3, "flag over env");
        assert_eq!(c.ping_timeout, 2, "env over file");
        assert_eq!(c.upgrade_timeout, 1, "file over default");
        assert_eq!(
            c.connect_timeout,
            Config::default().connect_timeout,
            "default"
        );
        let c = load(&["--cookie=false"], &[("SIO_COOKIE", "true")]).unwrap();
        assert!(!c.cookie);
    }

    #[test]
    fn errors_name_the_problem() {
        let path = file("no-such-key = 1\n");
        let err = load(&["--config", path.to_str().unwrap()], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-key"), "{err}");
        assert!(matches!(
            load(&["--config", "/nonexistent.toml"], &[]),
            Err(ConfigError::File { .. })
        ));
        assert!(matches!(
            load(&["--transports", "carrier-pigeon"], &[]),
            Err(ConfigError::Cli(_))
        ));
        assert!(matches!(load(&["--bogus"], &[]), Err(ConfigError::Cli(_))));
        for bad in [
            &["--path", "socket.io"][..],
            &["--ping-timeout", "0"],
            &["--cookie-same-site", "lax"],
            &["--prefix", "a b"],
            &["--namespaces", "chat"],
        ] {
            assert!(
                matches!(load(bad, &[]), Err(ConfigError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn help_lists_every_option_with_its_env_name() {
        let Err(ConfigError::Cli(e)) = load(&["--help"], &[]) else {
            panic!("no help")
        };
        assert_eq!(e.exit_code(), 0);
        let help = e.to_string();
        for name in [
            "--listen",
            "--nats",
            "--ping-interval",
            "--max-http-buffer-size",
            "--cors-origins",
            "--trust-proxy",
            "--authorize",
            "--log-format",
            "SIO_PING_INTERVAL",
            "SIO_NATS",
            "SIO_CONFIG",
        ] {
            assert!(help.contains(name), "{name} missing from --help");
        }
    }
}
