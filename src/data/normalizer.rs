//! BERT's basic tokenization exactly as google-research/bert tokenization.py does it, as a
//! `tokenizers` Normalizer + PreTokenizer pair (the WordPiece model after them is the crate's).
//!
//! Why not the crate's own `BertNormalizer`/`BertPreTokenizer`: they differ from the reference in
//! ways that change ids: control = Cc|Cf|Cn|Co (the reference: Cc|Cf, so private-use and
//! unassigned characters survive), whitespace = Rust's White_Space (turns U+000B, U+000C, U+0085
//! into spaces where the reference deletes them as controls), the CJK range starts at U+2B920
//! (the reference: U+2B820), accents are stripped before lowercasing (the reference lowercases
//! first, with Python's final-sigma rule) and categories come from Unicode 9 tables.
use tokenizers::tokenizer::{
    NormalizedString, Normalizer, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior,
};
use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// tokenization.py `_is_whitespace`: space, \t, \n, \r and category Zs.
pub fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r') || get_general_category(c) == Gc::SpaceSeparator
}

/// tokenization.py `_is_control`: categories Cc and Cf, except \t, \n, \r (whitespace there).
pub fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(get_general_category(c), Gc::Control | Gc::Format)
}

/// tokenization.py `_is_punctuation`: every non-alphanumeric printable ASCII character, and
/// categories P*.
pub fn is_punctuation(c: char) -> bool {
    if c.is_ascii_punctuation() {
        return true;
    }
    matches!(
        get_general_category(c),
        Gc::ConnectorPunctuation
            | Gc::DashPunctuation
            | Gc::OpenPunctuation
            | Gc::ClosePunctuation
            | Gc::InitialPunctuation
            | Gc::FinalPunctuation
            | Gc::OtherPunctuation
    )
}

/// tokenization.py `_is_chinese_char`: the CJK Unified Ideographs blocks.
pub fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B820..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// Python's `str.isspace()`, which `str.split()` (tokenization.py `whitespace_tokenize`) splits
/// on: Rust's White_Space plus the separators U+001C..U+001F.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `BasicTokenizer` up to the punctuation split: clean text, space out CJK characters, and for
/// uncased vocabularies lowercase then strip accents (NFD, drop Mn).
#[derive(Clone, Copy, Debug)]
pub struct BertBasicNormalizer {
    pub lowercase: bool,
}

impl Normalizer for BertBasicNormalizer {
    fn normalize(&self, s: &mut NormalizedString) -> tokenizers::Result<()> {
        s.filter(|c| !(c == '\0' || c == '\u{fffd}' || is_control(c)))
            .map(|c| if is_whitespace(c) { ' ' } else { c });
        let mut spaced: Vec<(char, isize)> = Vec::with_capacity(s.get().len());
        s.for_each(|c| {
            if is_chinese_char(c) {
                spaced.extend([(' ', 0), (c, 1), (' ', 1)]);
            } else {
                spaced.push((c, 0));
            }
        });
        s.transform(spaced, 0);
        if self.lowercase {
            lowercase_like_python(s);
            s.nfd()
                .filter(|c| get_general_category(c) != Gc::NonspacingMark);
        }
        Ok(())
    }
}

/// `str.lower()`: full Unicode lowercase mapping with the final-sigma rule. std's
/// `str::to_lowercase` implements both; it is run on the whole string (the rule's context never
/// crosses a space, so this equals lowering each whitespace token as the reference does) and its
/// output is aligned char by char with the per-char mapping, which only differs at a final Σ.
fn lowercase_like_python(s: &mut NormalizedString) {
    let lowered = s.get().to_lowercase();
    let mut out = lowered.chars();
    let mut changes: Vec<(char, isize)> = Vec::with_capacity(lowered.len());
    s.for_each(|c| {
        for (i, _) in c.to_lowercase().enumerate() {
            if let Some(l) = out.next() {
                changes.push((l, isize::from(i > 0)));
            }
        }
    });
    s.transform(changes, 0);
}

/// `BasicTokenizer`'s split: on whitespace (dropped), then around every punctuation character
/// (kept as its own token).
#[derive(Clone, Copy, Debug)]
pub struct BertBasicPreTokenizer;

impl PreTokenizer for BertBasicPreTokenizer {
    fn pre_tokenize(&self, p: &mut PreTokenizedString) -> tokenizers::Result<()> {
        p.split(|_, s| s.split(is_python_space, SplitDelimiterBehavior::Removed))?;
        p.split(|_, s| s.split(is_punctuation, SplitDelimiterBehavior::Isolated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize(text: &str, lowercase: bool) -> String {
        let mut s = NormalizedString::from(text);
        BertBasicNormalizer { lowercase }.normalize(&mut s).unwrap();
        s.get().to_string()
    }

    #[test]
    fn character_classes_follow_the_reference() {
        assert!(is_control('\u{200b}')); // ZERO WIDTH SPACE is Cf
        assert!(is_control('\u{0b}') && is_control('\u{85}')); // Cc, deleted (not spaced)
        assert!(!is_control('\u{e000}')); // private use survives
        assert!(is_whitespace('\u{3000}') && !is_whitespace('\u{2028}'));
        assert!(is_punctuation('$') && is_punctuation('`') && is_punctuation('\u{00bf}'));
        assert!(!is_punctuation('\u{00a9}')); // © is So, not punctuation
        assert!(is_chinese_char('\u{2b820}') && !is_chinese_char('\u{3042}'));
    }

    #[test]
    fn lowercases_then_strips_accents() {
        assert_eq!(normalize("Héllo\u{0b}World", true), "helloworld");
        assert_eq!(normalize("ΟΔΟΣ Σα", true), "οδος σα");
        assert_eq!(normalize("a中b", false), "a 中 b");
        assert_eq!(normalize("Café", false), "Café");
    }
}
