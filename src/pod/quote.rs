//! POSIX shell quoting: `--dry-run` prints commands that paste into a shell exactly as they would
//! have run, and the scripts sent to the workers pass every argument through their shell intact.

/// `s` as one shell word: as is when every character is one no shell treats specially, else in
/// single quotes (an inner `'` becomes `'\''`, the only character single quotes cannot hold).
/// A `--flag=value` word keeps its flag outside the quotes (`--command='...'`), as people write it.
pub fn quote(s: &str) -> String {
    if is_plain(s) {
        return s.to_string();
    }
    if let Some((flag, value)) = s.split_once('=') {
        if flag.starts_with("--") && is_plain(flag) {
            return format!("{flag}={}", single_quoted(value));
        }
    }
    single_quoted(s)
}

fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('=') // zsh expands a leading `=word`
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The words quoted and joined with spaces: one command line.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_and_the_rest_is_single_quoted() {
        assert_eq!(quote("--zone=us-west4-a"), "--zone=us-west4-a");
        assert_eq!(quote("bert-pod:tpu-run-pod/"), "bert-pod:tpu-run-pod/");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("=x"), "'=x'");
        assert_eq!(quote("*.tfrecord"), "'*.tfrecord'");
        assert_eq!(join(&["echo", "a;b", "c"]), "echo 'a;b' c");
        assert_eq!(quote("--command=ls -l"), "--command='ls -l'");
        assert_eq!(quote("--a b=c"), "'--a b=c'");
    }

    /// What bash makes of the quoted words is the words themselves.
    #[test]
    fn bash_reads_back_the_original_words() {
        let words = [
            "x",
            "a b",
            "it's",
            "$(id)",
            "\"q\"",
            "tab\there",
            "new\nline",
            "*",
            "~",
            "--command=cd d && echo 'x'",
            "--x=",
        ];
        let script = format!("printf '%s\\0' {}", join(&words));
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        let back: Vec<&str> = std::str::from_utf8(&out.stdout)
            .unwrap()
            .split_terminator('\0')
            .collect();
        assert_eq!(back, words);
    }
}
