//! The peers' command line: `PROGRAM SCENARIO [--key value | --flag]...`.

use std::collections::HashMap;
use std::str::FromStr;

/// A parsed command line: the first positional word and the `--key value` options.
#[derive(Debug, Default)]
pub struct Args {
    /// The scenario (first positional argument), empty when none was given.
    pub command: String,
    options: HashMap<String, String>,
}

impl Args {
    /// Parses `std::env::args()`; exits with a message on a malformed command line.
    pub fn from_env() -> Args {
        match Args::parse(std::env::args().skip(1)) {
            Ok(args) => args,
            Err(message) => fail(&message),
        }
    }

    /// Parses a list of arguments (without the program name).
    ///
    /// An option followed by another option, or by nothing, is a flag with the value `"true"`.
    pub fn parse(words: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut args = Args::default();
        let mut words = words.into_iter().peekable();
        while let Some(word) = words.next() {
            if let Some(key) = word.strip_prefix("--") {
                let value = match words.peek() {
                    Some(next) if !next.starts_with("--") => words.next().unwrap_or_default(),
                    _ => "true".to_string(),
                };
                args.options.insert(key.to_string(), value);
            } else if args.command.is_empty() {
                args.command = word;
            } else {
                return Err(format!("unexpected argument `{word}`"));
            }
        }
        Ok(args)
    }

    /// The option `--key` parsed as `T`, or `default` when absent; exits on a bad value.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> T {
        match self.options.get(key) {
            None => default,
            Some(text) => text
                .parse()
                .unwrap_or_else(|_| fail(&format!("bad value `{text}` for --{key}"))),
        }
    }

    /// The option `--key` as a string, or `default`.
    pub fn text(&self, key: &str, default: &str) -> String {
        self.options
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// Whether the flag `--key` was given.
    pub fn flag(&self, key: &str) -> bool {
        self.options.get(key).is_some_and(|v| v == "true")
    }
}

/// Prints `message` and exits with status 2.
pub fn fail(message: &str) -> ! {
    eprintln!("{}: {message}", program_name());
    std::process::exit(2)
}

fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|p| p.rsplit('/').next().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(words: &[&str]) -> Args {
        Args::parse(words.iter().map(|w| w.to_string())).unwrap()
    }

    #[test]
    fn command_options_and_flags() {
        let args = parse(&["echo-server", "--port", "0", "--threads", "--n", "5"]);
        assert_eq!(args.command, "echo-server");
        assert_eq!(args.get("port", 1u16), 0);
        assert!(args.flag("threads"));
        assert_eq!(args.get("n", 0usize), 5);
        assert_eq!(args.get("missing", 7usize), 7);
        assert_eq!(args.text("missing", "x"), "x");
    }

    #[test]
    fn rejects_a_second_positional() {
        assert!(Args::parse(["a".to_string(), "b".to_string()]).is_err());
    }
}
