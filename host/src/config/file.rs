//! The config file (`switchyard serve --config switchyard.toml`): every `serve` flag is a key,
//! spelled as the flag without its dashes (`max-sessions = 5000`). The keys are not declared
//! here: they are read off the clap command, so a flag added anywhere (a limit in
//! [`limits`](super::limits), a flag in the binary's `cli.rs`) is a key without more work.
//!
//! The file's values become command-line arguments placed after the user's, and only for flags
//! the user did not give on the command line or through an environment variable (clap's
//! `ValueSource`): so a flag beats its environment variable, which beats the file, which beats
//! the default. Each value is checked by the flag's own parser first, so an error names the key
//! and the file rather than a flag the user never typed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// Flags that make no sense as keys: the file itself, and clap's own.
const NOT_KEYS: [&str; 3] = ["config", "help", "version"];
/// How close (Jaro-Winkler similarity) an unknown key must be to a known one to be suggested.
const SUGGESTION_SIMILARITY: f64 = 0.8;

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key that is no flag of `serve`.
    #[error("{path}: unknown key `{key}`{}", suggestion(.close))]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// A known key spelled much like it.
        close: Option<String>,
    },
    /// A value of the wrong type, or one its flag refuses (e.g. out of range).
    #[error("{path}: key `{key}`: {message}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

fn suggestion(close: &Option<String>) -> String {
    close
        .as_ref()
        .map_or_else(String::new, |key| format!(" (did you mean `{key}`?)"))
}

/// The arguments that carry the file at `path` into `command` (the `serve` subcommand), for
/// every key whose flag `matches` (the command line parsed without the file) did not get from
/// the command line or the environment.
pub fn arguments(
    command: &Command,
    matches: &ArgMatches,
    path: &Path,
) -> Result<Vec<OsString>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|err: toml::de::Error| FileError::Syntax {
            path: path.to_owned(),
            message: err.message().to_owned(),
        })?;
    let mut arguments = Vec::new();
    for (key, value) in &table {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()) && !NOT_KEYS.contains(&key.as_str()))
            .ok_or_else(|| FileError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
                close: closest_key(command, key),
            })?;
        let bad = |message: String| FileError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
            message,
        };
        let given = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        let flag = OsString::from(format!("--{key}"));
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            let toml::Value::Boolean(on) = value else {
                return Err(bad(format!(
                    "expected true or false, found {}",
                    value.type_str()
                )));
            };
            if *on && !given {
                arguments.push(flag);
            }
            continue;
        }
        let text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            other => {
                return Err(bad(format!(
                    "expected a string or a number, found {}",
                    other.type_str()
                )));
            }
        };
        // The flag's own parser (type and range), so the error names this key.
        check_value(command, key, &text).map_err(|err| bad(clap_message(&err)))?;
        if !given {
            arguments.push(flag);
            arguments.push(OsString::from(text));
        }
    }
    Ok(arguments)
}

/// Runs the parser of flag `--key` on `text`: `command` parsed with that flag alone.
fn check_value(command: &Command, key: &str, text: &str) -> Result<(), clap::Error> {
    command
        .clone()
        .no_binary_name(true)
        .try_get_matches_from([format!("--{key}"), text.to_owned()])
        .map(drop)
}

/// clap's message without its `error: ` prefix and usage lines.
fn clap_message(err: &clap::Error) -> String {
    let rendered = err.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_owned()
}

/// The known key most like `key`, if one is close.
fn closest_key(command: &Command, key: &str) -> Option<String> {
    command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !NOT_KEYS.contains(long))
        .map(|long| (strsim::jaro_winkler(key, long), long))
        .filter(|(similarity, _)| *similarity >= SUGGESTION_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, long)| long.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn command() -> Command {
        Command::new("serve")
            .arg(
                Arg::new("max-sessions")
                    .long("max-sessions")
                    .value_parser(clap::value_parser!(u64).range(1..=10)),
            )
            .arg(
                Arg::new("no_cache")
                    .long("no-cache")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("config").long("config"))
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn arguments_for(text: &str, argv: &[&str]) -> Result<Vec<OsString>, FileError> {
        let matches =
            command().get_matches_from(std::iter::once("serve").chain(argv.iter().copied()));
        arguments(&command(), &matches, file(text).path())
    }

    #[test]
    fn keys_become_the_flags_not_given_on_the_command_line() {
        let args = arguments_for("max-sessions = 5\nno-cache = true\n", &[]).unwrap();
        assert_eq!(args, ["--max-sessions", "5", "--no-cache"]);
        let args = arguments_for("max-sessions = 5\n", &["--max-sessions", "7"]).unwrap();
        assert!(args.is_empty(), "{args:?}");
    }

    #[test]
    fn an_unknown_key_is_named_with_a_close_match() {
        let err = arguments_for("max-session = 5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `max-session`"), "{err}");
        assert!(err.contains("did you mean `max-sessions`"), "{err}");
        let err = arguments_for("config = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `config`"), "{err}");
    }

    #[test]
    fn a_bad_value_names_the_key() {
        let err = arguments_for("max-sessions = 50\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `max-sessions`") && err.contains("50"),
            "{err}"
        );
        let err = arguments_for("max-sessions = true\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `max-sessions`: expected a string or a number"),
            "{err}"
        );
        let err = arguments_for("no-cache = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `no-cache`: expected true or false"),
            "{err}"
        );
    }
}
