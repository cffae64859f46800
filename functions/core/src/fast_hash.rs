//! Hash maps and sets keyed by the lake's own keys (record keys, pseudonyms) inside one process:
//! foldhash, seeded per process, instead of SipHash. These maps hold every key of a bucket or a
//! tenant, and hashing was a fifth of a gold refresh's time; the keys are HMAC pseudonyms, not text
//! an outsider can choose to collide.

pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
