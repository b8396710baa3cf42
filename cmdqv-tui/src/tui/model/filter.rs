//! The filter every list shares: a case-insensitive substring of some of a row's fields.

/// Indices of the `items` that match `filter`, in their order. `matches` gets the filter
/// already lower-cased (once for the whole list, not once a row).
pub fn matching<T>(items: &[T], filter: &str, matches: impl Fn(&T, &str) -> bool) -> Vec<usize> {
    if filter.is_empty() {
        return (0..items.len()).collect();
    }
    let lower = filter.to_lowercase();
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| matches(item, &lower))
        .map(|(i, _)| i)
        .collect()
}

/// Does `item` match `filter` (empty matches everything)? For one row; lists use [`matching`].
pub fn one<T>(item: &T, filter: &str, matches: impl Fn(&T, &str) -> bool) -> bool {
    filter.is_empty() || matches(item, &filter.to_lowercase())
}

/// Does `text` contain `lower` (a lower-case needle), ignoring case?
pub fn contains(text: &str, lower: &str) -> bool {
    text.to_lowercase().contains(lower)
}
