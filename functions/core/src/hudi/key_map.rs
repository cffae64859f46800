//! Maps and sets of one bucket's record keys: the memory of a commit that grows with the incoming
//! file (the plan's incoming keys, the merge's winners). A pseudonymous key — 32 lowercase hex
//! digits, as every silver key is — is held as its 16 bytes instead of a boxed string (16 bytes
//! plus a 32-byte heap block and the allocator's overhead); any other key is held as text.

use crate::fast_hash::FastMap;

/// A key as it is held. The two forms never collide: a key held as text is never 32 lowercase hex
/// digits.
enum Form<'a> {
    Packed([u8; 16]),
    Text(&'a str),
}

fn form(key: &str) -> Form<'_> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    let digits = key.as_bytes();
    if digits.len() != 32 {
        return Form::Text(key);
    }
    let mut packed = [0u8; 16];
    for (byte, pair) in packed.iter_mut().zip(digits.chunks_exact(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(high), Some(low)) => *byte = high << 4 | low,
            _ => return Form::Text(key),
        }
    }
    Form::Packed(packed)
}

/// A map from record key to `V`.
pub(super) struct KeyMap<V> {
    packed: FastMap<[u8; 16], V>,
    text: FastMap<Box<str>, V>,
}

/// A set of record keys.
pub(super) type KeySet = KeyMap<()>;

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        Self {
            packed: FastMap::default(),
            text: FastMap::default(),
        }
    }
}

impl<V> std::fmt::Debug for KeyMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMap({} keys)", self.len())
    }
}

impl<V> KeyMap<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        match form(key) {
            Form::Packed(packed) => self.packed.get(&packed),
            Form::Text(text) => self.text.get(text),
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        match form(key) {
            Form::Packed(packed) => self.packed.get_mut(&packed),
            Form::Text(text) => self.text.get_mut(text),
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: &str, value: V) -> Option<V> {
        match form(key) {
            Form::Packed(packed) => self.packed.insert(packed, value),
            Form::Text(text) => self.text.insert(text.into(), value),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        match form(key) {
            Form::Packed(packed) => self.packed.remove(&packed),
            Form::Text(text) => self.text.remove(text),
        }
    }

    pub fn len(&self) -> usize {
        self.packed.len() + self.text.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.packed.values().chain(self.text.values())
    }

    /// How many of these keys `other` does not hold.
    pub fn count_missing_from<W>(&self, other: &KeyMap<W>) -> usize {
        let packed = self
            .packed
            .keys()
            .filter(|k| !other.packed.contains_key(*k));
        let text = self.text.keys().filter(|k| !other.text.contains_key(*k));
        packed.count() + text.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PSEUDONYM: &str = "b605eee73ba98c19793f7d37ed2f947c";

    #[test]
    fn pseudonyms_are_packed_and_every_other_key_is_text() {
        // GIVEN a pseudonym, and keys that look almost like one
        let upper = PSEUDONYM.to_uppercase();
        let short = &PSEUDONYM[..31];
        let not_hex = format!("{}g", &PSEUDONYM[..31]);
        // THEN only the pseudonym is packed, to the bytes its digits spell
        match form(PSEUDONYM) {
            Form::Packed(bytes) => assert_eq!(hex::encode(bytes), PSEUDONYM),
            Form::Text(_) => panic!("a pseudonym is packed"),
        }
        for key in [
            upper.as_str(),
            short,
            not_hex.as_str(),
            "",
            "tenant-01|h1|2026-01",
        ] {
            assert!(
                matches!(form(key), Form::Text(text) if text == key),
                "{key}"
            );
        }
    }

    #[test]
    fn packed_and_text_keys_are_distinct_entries() {
        // GIVEN a map holding a pseudonym and its upper-case spelling (text)
        let mut map: KeyMap<u32> = KeyMap::default();
        let upper = PSEUDONYM.to_uppercase();
        assert_eq!(map.insert(PSEUDONYM, 1), None);
        assert_eq!(map.insert(&upper, 2), None);
        // WHEN one is replaced and looked up
        assert_eq!(map.insert(PSEUDONYM, 3), Some(1));
        *map.get_mut(&upper).unwrap() += 10;
        // THEN each key keeps its own value, and removal takes exactly one
        assert_eq!((map.get(PSEUDONYM), map.get(&upper)), (Some(&3), Some(&12)));
        assert_eq!(map.len(), 2);
        assert_eq!(map.remove(PSEUDONYM), Some(3));
        assert!(!map.contains_key(PSEUDONYM) && map.contains_key(&upper));
        assert_eq!(map.values().copied().collect::<Vec<_>>(), vec![12]);
    }

    #[test]
    fn counts_the_keys_another_map_lacks() {
        // GIVEN keys of both forms, some of them in another map
        let mut keys = KeySet::default();
        let mut homes: KeyMap<u32> = KeyMap::default();
        for key in [
            PSEUDONYM,
            "00000000000000000000000000000000",
            "text-key",
            "other",
        ] {
            keys.insert(key, ());
        }
        homes.insert(PSEUDONYM, 1);
        homes.insert("text-key", 2);
        homes.insert("not-incoming", 3);
        // THEN the count is of the keys missing from it, of either form
        assert_eq!(keys.count_missing_from(&homes), 2);
    }
}
