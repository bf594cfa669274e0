//! The command lines of the suite's programs: `PROGRAM [COMMAND] [--key value | --key=value |
//! --flag]...`, checked against the program's [`Spec`].
//!
//! `--help` (or `-h`) anywhere prints the usage on stdout and exits 0. Anything the spec does
//! not name — an unknown command or option, an option the command does not take, a missing or
//! unexpected value, an option given twice, a second positional word — is an error: one line
//! on stderr naming it, exit status 2. Values are checked when a program reads them
//! ([`Args::get`]), which every program does before it starts any work.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

/// An option a program or command takes.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    /// The name without the leading `--`.
    pub name: &'static str,
    /// Whether it is `--name VALUE` (true) or a flag `--name` (false).
    pub takes_value: bool,
}

impl Opt {
    /// `--name VALUE`.
    pub const fn value(name: &'static str) -> Opt {
        Opt {
            name,
            takes_value: true,
        }
    }

    /// `--name`, without a value.
    pub const fn flag(name: &'static str) -> Opt {
        Opt {
            name,
            takes_value: false,
        }
    }
}

/// A command (the first positional word) and the options it takes besides the program's.
#[derive(Clone, Copy, Debug)]
pub struct Command {
    pub name: &'static str,
    pub options: &'static [Opt],
}

/// What a program accepts.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The program's name, for messages.
    pub program: &'static str,
    /// The text `--help` prints.
    pub usage: &'static str,
    /// Options every command takes (all options, for a program without commands).
    pub options: &'static [Opt],
    /// The commands; empty for a program that takes none.
    pub commands: &'static [Command],
}

/// Why a command line was not accepted.
#[derive(Debug, PartialEq)]
pub enum Rejected {
    /// `--help` or `-h` was given.
    Help,
    /// The command line is wrong; the message names what.
    Bad(String),
}

/// A parsed command line: the command and the `--key value` options.
#[derive(Debug, Default)]
pub struct Args {
    /// The command (first positional argument); empty for a program without commands.
    pub command: String,
    options: HashMap<String, String>,
}

impl Args {
    /// Parses `std::env::args()` against `spec`: prints the usage and exits 0 on `--help`,
    /// prints one line and exits 2 on a bad command line.
    pub fn from_env(spec: &Spec) -> Args {
        match Args::parse(spec, std::env::args().skip(1)) {
            Ok(args) => args,
            Err(Rejected::Help) => {
                print!("{}", spec.usage);
                std::process::exit(0)
            }
            Err(Rejected::Bad(message)) => bad_usage(spec.program, &message),
        }
    }

    /// Parses a list of arguments (without the program name) against `spec`.
    pub fn parse(spec: &Spec, words: impl IntoIterator<Item = String>) -> Result<Args, Rejected> {
        let words: Vec<String> = words.into_iter().collect();
        if words.iter().any(|w| w == "--help" || w == "-h") {
            return Err(Rejected::Help);
        }
        let bad = |message: String| Err(Rejected::Bad(message));
        let mut args = Args::default();
        let mut command: Option<&Command> = None;
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            if let Some(option) = word.strip_prefix("--") {
                let (name, inline) = match option.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_string())),
                    None => (option, None),
                };
                let Some(opt) = find_option(spec, command, name) else {
                    let elsewhere = spec.commands.iter().find(|c| has_option(c.options, name));
                    return bad(match (command, elsewhere) {
                        (Some(c), Some(_)) => format!("`{}` does not take --{name}", c.name),
                        (None, Some(_)) => format!("--{name} must come after the command"),
                        _ => format!("unknown option `--{name}`"),
                    });
                };
                let value = match (opt.takes_value, inline) {
                    (false, None) => "true".to_string(),
                    (false, Some(_)) => return bad(format!("--{name} takes no value")),
                    (true, Some(value)) => value,
                    (true, None) => match words.next() {
                        Some(value) if !value.starts_with("--") => value,
                        _ => return bad(format!("--{name} needs a value")),
                    },
                };
                if args.options.insert(name.to_string(), value).is_some() {
                    return bad(format!("--{name} is given twice"));
                }
            } else if word.starts_with('-') && word.len() > 1 {
                return bad(format!("unknown option `{word}`"));
            } else if command.is_none() && !spec.commands.is_empty() {
                match spec.commands.iter().find(|c| c.name == word) {
                    Some(c) => command = Some(c),
                    None => {
                        return bad(format!(
                            "unknown command `{word}` (expected {})",
                            command_names(spec)
                        ))
                    }
                }
                args.command = word;
            } else {
                return bad(format!("unexpected argument `{word}`"));
            }
        }
        if command.is_none() && !spec.commands.is_empty() {
            return bad(format!(
                "no command given (expected {})",
                command_names(spec)
            ));
        }
        Ok(args)
    }

    /// The option `--key` parsed as `T`, or `default` when absent; prints one line and exits 2
    /// on a value that does not parse.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> T {
        match self.value(key) {
            Ok(value) => value.unwrap_or(default),
            Err(message) => bad_usage(&program_name(), &message),
        }
    }

    /// The option `--key` parsed as `T`: `Ok(None)` when absent, `Err` naming the option and
    /// the value when it does not parse.
    pub fn value<T: FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        match self.options.get(key) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("bad value `{text}` for --{key}")),
        }
    }

    /// The option `--key` as a string, or `default`.
    pub fn text(&self, key: &str, default: &str) -> String {
        self.options
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// The option `--key`, which must be one of `choices`, or `default` when absent (`None`:
    /// the option is required); prints one line and exits 2 otherwise.
    pub fn choice<'a>(&self, key: &str, choices: &[&'a str], default: Option<&'a str>) -> &'a str {
        match self.try_choice(key, choices, default) {
            Ok(choice) => choice,
            Err(message) => bad_usage(&program_name(), &message),
        }
    }

    /// [`Args::choice`], with the error returned instead.
    pub fn try_choice<'a>(
        &self,
        key: &str,
        choices: &[&'a str],
        default: Option<&'a str>,
    ) -> Result<&'a str, String> {
        let expected = choices.join("|");
        match (self.options.get(key), default) {
            (None, Some(default)) => Ok(default),
            (None, None) => Err(format!("--{key} is required (expected {expected})")),
            (Some(text), _) => choices
                .iter()
                .find(|&&c| c == text)
                .copied()
                .ok_or_else(|| format!("bad value `{text}` for --{key} (expected {expected})")),
        }
    }

    /// Whether the flag `--key` was given.
    pub fn flag(&self, key: &str) -> bool {
        self.options.get(key).is_some_and(|v| v == "true")
    }
}

fn find_option(spec: &Spec, command: Option<&Command>, name: &str) -> Option<Opt> {
    spec.options
        .iter()
        .chain(command.map_or(&[][..], |c| c.options))
        .find(|o| o.name == name)
        .copied()
}

fn has_option(options: &[Opt], name: &str) -> bool {
    options.iter().any(|o| o.name == name)
}

fn command_names(spec: &Spec) -> String {
    spec.commands
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join("|")
}

/// Rejects a command line: prints `program: message; see `program --help`` as one line on
/// stderr and exits with status 2.
pub fn bad_usage(program: &str, message: &dyn Display) -> ! {
    eprintln!("{program}: {message}; see `{program} --help`");
    std::process::exit(2)
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
    use super::{Args, Command, Opt, Rejected, Spec};

    const SPEC: Spec = Spec {
        program: "peer",
        usage: "usage: peer echo-server|spawn-join [--spawn corun|thread] ...\n",
        options: &[Opt::value("spawn"), Opt::flag("verbose")],
        commands: &[
            Command {
                name: "echo-server",
                options: &[Opt::value("port"), Opt::flag("threads")],
            },
            Command {
                name: "spawn-join",
                options: &[Opt::value("tasks"), Opt::value("batch")],
            },
        ],
    };

    /// A driver-like program: no commands.
    const FLAT: Spec = Spec {
        program: "driver",
        usage: "usage: driver [--quick] [--reps N]\n",
        options: &[Opt::flag("quick"), Opt::value("reps")],
        commands: &[],
    };

    fn parse(spec: &Spec, words: &[&str]) -> Result<Args, Rejected> {
        Args::parse(spec, words.iter().map(|w| w.to_string()))
    }

    fn bad(spec: &Spec, words: &[&str]) -> String {
        match parse(spec, words) {
            Err(Rejected::Bad(message)) => message,
            other => panic!("{words:?} was not rejected: {other:?}"),
        }
    }

    #[test]
    fn good_values() {
        let args = parse(
            &SPEC,
            &["echo-server", "--port", "0", "--threads", "--spawn=thread"],
        )
        .unwrap();
        assert_eq!(args.command, "echo-server");
        assert_eq!(args.get("port", 1u16), 0);
        assert!(args.flag("threads"));
        assert!(!args.flag("verbose"));
        assert_eq!(args.text("spawn", "corun"), "thread");
        assert_eq!(
            args.try_choice("spawn", &["corun", "thread"], None),
            Ok("thread")
        );
        assert_eq!(args.try_choice("mode", &["a", "b"], Some("b")), Ok("b"));
        assert_eq!(args.get("missing", 7usize), 7);
        assert_eq!(args.value::<u64>("missing"), Ok(None));

        // The program's own options may come before the command.
        let args = parse(
            &SPEC,
            &[
                "--spawn",
                "corun",
                "spawn-join",
                "--tasks",
                "5",
                "--batch=2",
            ],
        )
        .unwrap();
        assert_eq!(args.command, "spawn-join");
        assert_eq!(args.text("spawn", ""), "corun");
        assert_eq!(args.value::<usize>("tasks"), Ok(Some(5)));
        assert_eq!(args.get("batch", 0usize), 2);

        let args = parse(&FLAT, &["--quick", "--reps", "5"]).unwrap();
        assert!(args.flag("quick"));
        assert_eq!(args.get("reps", 3usize), 5);
        assert_eq!(parse(&FLAT, &[]).unwrap().get("reps", 3usize), 3);
    }

    #[test]
    fn help_wins_anywhere() {
        for words in [
            &["--help"][..],
            &["-h"],
            &["spawn-join", "--help"],
            &["--bogus", "--help"],
            &["--tasks", "x", "-h"],
        ] {
            assert_eq!(parse(&SPEC, words).err(), Some(Rejected::Help), "{words:?}");
        }
        assert_eq!(parse(&FLAT, &["--help"]).err(), Some(Rejected::Help));
    }

    #[test]
    fn unknown_arguments_are_named() {
        assert!(bad(&SPEC, &["spawn-join", "--bogus"]).contains("`--bogus`"));
        assert!(bad(&SPEC, &["spawn-join", "-x"]).contains("`-x`"));
        assert!(bad(&SPEC, &["bogus"]).contains("unknown command `bogus`"));
        assert!(bad(&SPEC, &[]).contains("no command given"));
        assert!(bad(&SPEC, &["--spawn", "corun"]).contains("no command given"));
        assert!(bad(&SPEC, &["spawn-join", "extra"]).contains("`extra`"));
        assert!(bad(&SPEC, &["spawn-join", "--port", "1"]).contains("does not take --port"));
        assert!(bad(&SPEC, &["--tasks", "1", "spawn-join"]).contains("after the command"));
        assert!(bad(&FLAT, &["--bogus"]).contains("`--bogus`"));
        assert!(bad(&FLAT, &["run"]).contains("unexpected argument `run`"));
    }

    #[test]
    fn bad_values_are_named() {
        assert!(bad(&FLAT, &["--reps"]).contains("--reps needs a value"));
        assert!(bad(&FLAT, &["--reps", "--quick"]).contains("--reps needs a value"));
        assert!(bad(&FLAT, &["--quick=yes"]).contains("--quick takes no value"));
        assert!(bad(&FLAT, &["--reps", "1", "--reps", "2"]).contains("--reps is given twice"));
        let args = parse(&SPEC, &["spawn-join", "--tasks", "many", "--batch", "-5"]).unwrap();
        assert_eq!(
            args.value::<usize>("tasks"),
            Err("bad value `many` for --tasks".to_string())
        );
        assert_eq!(
            args.value::<usize>("batch"),
            Err("bad value `-5` for --batch".to_string())
        );
        let args = parse(&SPEC, &["--spawn", "fibre", "spawn-join"]).unwrap();
        assert_eq!(
            args.try_choice("spawn", &["corun", "thread"], Some("corun")),
            Err("bad value `fibre` for --spawn (expected corun|thread)".to_string())
        );
        assert_eq!(
            args.try_choice("mode", &["a", "b"], None),
            Err("--mode is required (expected a|b)".to_string())
        );
    }
}
