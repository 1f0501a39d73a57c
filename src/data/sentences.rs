//! Sentence splitting for one-paragraph-per-line input, and detection of the input layout.
//!
//! Splitter: Unicode UAX #29 sentence boundaries from the `unicode-segmentation` crate (no model
//! or data files, language-neutral, deterministic, widely used), plus one repair the standard
//! leaves to tailoring: no break after a title abbreviation or a single-letter initial followed
//! by a capitalized word ("Mr. Darcy", "J. Smith"), which UAX #29 splits. A statistical
//! splitter (punkt) would need trained parameters that no maintained crate ships; SRX rule sets
//! are heavier and per-language. BERT only needs sentence-like segments for next-sentence
//! prediction, so rare misses cost little.
use unicode_segmentation::UnicodeSegmentation;

/// How input text files are laid out. Documents are separated by empty lines in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum InputFormat {
    /// Decide per file from its first lines (see [`detect_format`]).
    Auto,
    /// One sentence per line (google-research/bert's format).
    Sentences,
    /// One paragraph per line; each is split into sentences.
    Paragraphs,
}

/// Abbreviations that are almost always followed by a name, so a following capital letter does
/// not start a sentence.
const TITLE_ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "messrs", "mme", "mlle", "dr", "prof", "st", "mt", "rev", "fr", "gen",
    "col", "capt", "lt", "sgt", "cmdr", "adm", "gov", "sen", "rep", "hon", "pres", "supt",
];

fn ends_with_name_prefix(piece: &str) -> bool {
    let trimmed = piece.trim_end();
    let Some(stem) = trimmed.strip_suffix('.') else {
        return false;
    };
    let word = stem
        .rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"' || c == '\u{201c}')
        .next()
        .unwrap_or("");
    let mut chars = word.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => c.is_uppercase(),
        (Some(_), Some(_)) => TITLE_ABBREVIATIONS.contains(&word.to_lowercase().as_str()),
        _ => false,
    }
}

/// The sentences of one paragraph, trimmed, empty ones dropped.
pub fn split_sentences(paragraph: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    for (at, piece) in paragraph.split_sentence_bound_indices() {
        if start.is_none() {
            start = Some(at);
        }
        end = at + piece.len();
        if !ends_with_name_prefix(piece) {
            if let Some(s) = start.take() {
                push_trimmed(&mut out, &paragraph[s..end]);
            }
        }
    }
    if let Some(s) = start {
        push_trimmed(&mut out, &paragraph[s..end]);
    }
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let t = s.trim();
    if !t.is_empty() {
        out.push(t);
    }
}

/// Lines looked at by [`detect_format`].
pub const DETECT_LINES: usize = 2000;
/// Share of non-empty lines holding several sentences above which a file is read as paragraphs.
pub const PARAGRAPH_SHARE: f64 = 0.2;

/// Sentences or paragraphs: a file is one paragraph per line when at least 20% of its first
/// (up to 2000) non-empty lines hold more than one sentence. Sentence-per-line files rarely
/// reach a few percent (only where the splitter disagrees with the author); prose paragraphs
/// are mostly multi-sentence.
pub fn detect_format<'a>(lines: impl Iterator<Item = &'a str>) -> InputFormat {
    let mut seen = 0usize;
    let mut multi = 0usize;
    for line in lines
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(DETECT_LINES)
    {
        seen += 1;
        if split_sentences(line).len() > 1 {
            multi += 1;
        }
    }
    if seen > 0 && multi as f64 >= PARAGRAPH_SHARE * seen as f64 {
        InputFormat::Paragraphs
    } else {
        InputFormat::Sentences
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sentences_but_not_titles_or_initials() {
        assert_eq!(
            split_sentences("Mr. Darcy bowed. She smiled!  Was it J. Smith? Yes, e.g. him."),
            vec![
                "Mr. Darcy bowed.",
                "She smiled!",
                "Was it J. Smith?",
                "Yes, e.g. him."
            ]
        );
        assert_eq!(split_sentences("  "), Vec::<&str>::new());
        assert_eq!(split_sentences("no end"), vec!["no end"]);
    }

    #[test]
    fn detects_layouts() {
        let sentences = "The cat sat.\nIt purred.\n\nA new document.\nWith two lines.\n";
        assert_eq!(detect_format(sentences.lines()), InputFormat::Sentences);
        let paragraphs = "The cat sat. It purred.\n\nA new one. Two sentences here.\n";
        assert_eq!(detect_format(paragraphs.lines()), InputFormat::Paragraphs);
    }
}
