//! run_squad's `get_final_text`: map a predicted span, known only as normalized WordPiece text
//! ("steve smith"), back onto the original words it came from ("Steve Smith's") and cut the
//! original to the predicted part ("Steve Smith").
//!
//! The original words are basic-tokenized again; if that text, with spaces removed, has as many
//! characters as the original with spaces removed, the two are taken to align character by
//! character. When any step fails the whole original span is returned (as run_squad does).
use super::error::Result;
use super::tokenizer::SquadTokenizer;

/// Characters of `text` without the spaces, and for each one its index in `text`.
fn strip_spaces(text: &[char]) -> (Vec<char>, Vec<usize>) {
    text.iter()
        .enumerate()
        .filter(|(_, c)| **c != ' ')
        .map(|(i, c)| (*c, i))
        .unzip()
}

/// The first char index where `needle` occurs in `hay` (Python's `str.find`).
fn find_chars(hay: &[char], needle: &[char]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `pred_text`: the predicted WordPieces joined, `##` removed; `orig_text`: the original
/// whitespace words the span covers, joined by spaces.
pub fn get_final_text(
    pred_text: &str,
    orig_text: &str,
    tokenizer: &dyn SquadTokenizer,
) -> Result<String> {
    let tok_text: Vec<char> = tokenizer
        .basic_tokenize(orig_text)?
        .join(" ")
        .chars()
        .collect();
    let pred: Vec<char> = pred_text.chars().collect();
    let Some(start) = find_chars(&tok_text, &pred) else {
        return Ok(orig_text.to_string());
    };
    // Python: end = start + len - 1, which is -1 for an empty prediction (then unmappable).
    let Some(end) = (start + pred.len()).checked_sub(1) else {
        return Ok(orig_text.to_string());
    };
    let orig: Vec<char> = orig_text.chars().collect();
    let (orig_ns, orig_ns_to_s) = strip_spaces(&orig);
    let (tok_ns, tok_ns_to_s) = strip_spaces(&tok_text);
    if orig_ns.len() != tok_ns.len() {
        return Ok(orig_text.to_string());
    }
    // tok_s_to_ns: a char index of tok_text -> its index without spaces (none for a space).
    let tok_s_to_ns = |s: usize| tok_ns_to_s.binary_search(&s).ok();
    let map = |s: usize| tok_s_to_ns(s).and_then(|ns| orig_ns_to_s.get(ns).copied());
    match (map(start), map(end)) {
        (Some(a), Some(b)) if a <= b => Ok(orig[a..=b].iter().collect()),
        // Python slices orig[a:b+1] with b < a to "".
        (Some(_), Some(_)) => Ok(String::new()),
        _ => Ok(orig_text.to_string()),
    }
}
