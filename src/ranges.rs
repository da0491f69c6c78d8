//! Number lists as people type them in flags: single numbers and inclusive ranges
//! separated by commas, e.g. `0-4` or `1,3,5-7` (layers to freeze, classes to keep).

/// Parses `text` into the numbers it lists, in the order written (ranges ascending),
/// each at least `min`. On failure returns the offending part of the text, for the
/// caller's message (which knows what the numbers mean).
pub fn parse(text: &str, min: usize) -> Result<Vec<usize>, String> {
    let mut numbers = Vec::new();
    for part in text.split(',').map(str::trim) {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= min)
                .ok_or_else(|| part.to_string())
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(part.to_string());
                }
                numbers.extend(a..=b);
            }
            None => numbers.push(number(part)?),
        }
    }
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse("0-4", 0), Ok(vec![0, 1, 2, 3, 4]));
        assert_eq!(parse("1, 3,5-6", 1), Ok(vec![1, 3, 5, 6]));
        assert_eq!(parse("7", 0), Ok(vec![7]));
    }

    #[test]
    fn bad_parts_are_returned() {
        assert_eq!(parse("0,2", 1), Err("0".into()));
        assert_eq!(parse("4-2", 0), Err("4-2".into()));
        assert_eq!(parse("1,x", 0), Err("x".into()));
        assert_eq!(parse("", 0), Err("".into()));
        assert_eq!(parse("-3", 0), Err("-3".into()));
    }
}
