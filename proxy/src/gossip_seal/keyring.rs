//! The gossip keyring: which 32-byte keys this node seals with and accepts.
//!
//! Owns parsing the keyring file, key ids and the ciphers built from the keys.
//! It must never let key material reach `Debug`, `Display`, an error message or a
//! log line: only the [`KeyId`] (a hash prefix) is ever shown.
//!
//! # File format
//!
//! One key per line, 64 hexadecimal characters (32 bytes, either case). A `#` starts
//! a comment that runs to the end of the line; blank lines are ignored. Hex was
//! chosen over base64 because it is what `openssl rand -hex 32` prints and because
//! a line with one character too many or too few is easy to spot by eye.
//!
//! ```text
//! # remesh gossip keyring: the first key seals, every key opens.
//! 3f1c...e9a0   # added 2026-11-27, primary
//! 77ab...01cd   # old key, remove once no peer seals with it
//! ```
//!
//! Rotation without downtime: add the new key as the second line on every node;
//! once all nodes have it, move it to the first line on every node; once the
//! `opened_by_secondary` counter stays at zero everywhere, remove the old line.

use std::fmt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::{Key, XChaCha20Poly1305};
use rand::Rng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of one key in bytes.
pub const KEY_LEN: usize = 32;

/// Most keys a ring may hold. Every forged packet is tried against every key, so
/// this bounds the work a stranger can make a node do per packet; rotation needs
/// two keys at a time, three when a rotation overlaps a revocation.
pub const MAX_KEYS: usize = 8;

/// The first 4 bytes of SHA-256 of a key: safe to log, and carried in each packet
/// so the receiver knows which key to try first.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    fn of(key: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::digest(key);
        Self([digest[0], digest[1], digest[2], digest[3]])
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a keyring could not be built. Loading is pure: on any error no keyring
/// exists and whatever keyring the caller already had stays in force.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file could not be read (or is not UTF-8). Nothing was loaded.
    #[error("cannot read keyring file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line is not 64 hex characters. The line's text is deliberately not
    /// quoted: it is probably a key with a typo. Nothing was loaded.
    #[error("keyring line {line}: expected 64 hex characters (32 bytes), found {found} characters")]
    BadLength { line: usize, found: usize },
    /// A line has the right length but a non-hex character. Nothing was loaded.
    #[error("keyring line {line}: character {column} is not a hex digit")]
    BadHex { line: usize, column: usize },
    /// The same key appears twice; probably a rotation step done twice.
    /// Nothing was loaded.
    #[error("keyring line {line}: duplicate of the key on line {first_line} (id {id})")]
    Duplicate {
        line: usize,
        first_line: usize,
        id: KeyId,
    },
    /// More than [`MAX_KEYS`] keys. Nothing was loaded.
    #[error("keyring line {line}: more than {MAX_KEYS} keys")]
    TooMany { line: usize },
    /// No key at all: a node without a key could neither seal nor open.
    /// Nothing was loaded.
    #[error("keyring has no key (need at least one 64-hex-character line)")]
    Empty,
}

/// One key of the ring: its id, its secret (wiped on drop) and the cipher.
pub(crate) struct RingKey {
    pub(crate) id: KeyId,
    secret: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) cipher: XChaCha20Poly1305,
}

/// An ordered set of gossip keys. The first key is the primary: it seals every
/// outgoing packet. Every key opens incoming packets.
pub struct Keyring {
    /// Held apart from the rest so a ring cannot be empty by construction.
    primary: RingKey,
    /// The other keys, in file order: they only open.
    secondaries: Vec<RingKey>,
}

impl Keyring {
    /// Parses the keyring text format described in the module doc.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys: Vec<(usize, [u8; KEY_LEN])> = Vec::new();
        // Editors on some systems prepend a byte-order mark; it is not part of a key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw_line) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw_line.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let key = decode_key_line(content, line)?;
            if keys.len() == MAX_KEYS {
                return Err(KeyringError::TooMany { line });
            }
            keys.push((line, key));
        }
        Self::build(keys)
    }

    /// Reads and parses a keyring file. Warns (without failing) when the file is
    /// readable by group or others, since anyone who can read it can join the mesh.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let io_error = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io_error)?);
        warn_if_shared(path);
        Self::parse(&text)
    }

    /// Builds a ring from raw keys, first = primary. Same rules as [`Self::parse`];
    /// error line numbers count keys from 1.
    pub fn from_keys(keys: impl IntoIterator<Item = [u8; KEY_LEN]>) -> Result<Self, KeyringError> {
        let mut numbered = Vec::new();
        for (index, key) in keys.into_iter().enumerate() {
            if index == MAX_KEYS {
                return Err(KeyringError::TooMany { line: index + 1 });
            }
            numbered.push((index + 1, key));
        }
        Self::build(numbered)
    }

    /// A ring holding one fresh key from the thread-local CSPRNG (seeded by the OS).
    pub fn generate() -> Self {
        Self::generate_from_rng(&mut rand::rng())
    }

    /// A ring holding one key drawn from `rng`; tests pass a seeded RNG so their
    /// keys are reproducible.
    pub fn generate_from_rng<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(key.as_mut());
        Self {
            primary: RingKey::new(*key),
            secondaries: Vec::new(),
        }
    }

    /// The ring in the file format, primary first, one commented line per key.
    /// This is secret material: write it only to a file with mode 0600 or to the
    /// terminal of an operator who asked for it (`keygen`).
    pub fn export_secret_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::from(
            "# remesh gossip keyring: the first key seals, every key opens.\n",
        ));
        for key in self.all() {
            out.push_str(&hex::encode(key.secret.as_ref()));
            out.push_str(&format!("  # id {}\n", key.id));
        }
        out
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> KeyId {
        self.primary().id
    }

    /// Ids of every key, primary first.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.all().map(|key| key.id)
    }

    /// Number of keys (at least 1, at most [`MAX_KEYS`]).
    pub fn len(&self) -> usize {
        1 + self.secondaries.len()
    }

    /// Always false: a ring holds at least one key. Present for clippy's
    /// `len_without_is_empty` and for callers that test emptiness generically.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub(crate) fn primary(&self) -> &RingKey {
        &self.primary
    }

    fn all(&self) -> impl Iterator<Item = &RingKey> {
        std::iter::once(&self.primary).chain(&self.secondaries)
    }

    /// Keys in the order an incoming packet should try them: those whose id
    /// matches the packet's hint first, then the rest in ring order.
    pub(crate) fn candidates(&self, hint: KeyId) -> impl Iterator<Item = &RingKey> {
        let matching = self.all().filter(move |key| key.id == hint);
        let others = self.all().filter(move |key| key.id != hint);
        matching.chain(others)
    }

    pub(crate) fn is_primary(&self, key: &RingKey) -> bool {
        std::ptr::eq(key, &self.primary)
    }

    fn build(keys: Vec<(usize, [u8; KEY_LEN])>) -> Result<Self, KeyringError> {
        let keys: Vec<(usize, Zeroizing<[u8; KEY_LEN]>)> = keys
            .into_iter()
            .map(|(line, key)| (line, Zeroizing::new(key)))
            .collect();
        for (i, (line, key)) in keys.iter().enumerate() {
            // Compare whole keys, not ids: two distinct keys may share a 4-byte id.
            if let Some((first_line, _)) = keys[..i].iter().find(|(_, earlier)| earlier == key) {
                return Err(KeyringError::Duplicate {
                    line: *line,
                    first_line: *first_line,
                    id: KeyId::of(key),
                });
            }
        }
        let mut ring_keys = keys.into_iter().map(|(_, key)| RingKey::new(*key));
        let primary = ring_keys.next().ok_or(KeyringError::Empty)?;
        Ok(Self {
            primary,
            secondaries: ring_keys.collect(),
        })
    }
}

impl RingKey {
    fn new(secret: [u8; KEY_LEN]) -> Self {
        let secret = Zeroizing::new(secret);
        let cipher = XChaCha20Poly1305::new(&Key::from(*secret));
        Self {
            id: KeyId::of(&secret),
            secret,
            cipher,
        }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary_id())
            .field("keys", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

fn decode_key_line(content: &str, line: usize) -> Result<[u8; KEY_LEN], KeyringError> {
    let found = content.chars().count();
    if found != KEY_LEN * 2 {
        return Err(KeyringError::BadLength { line, found });
    }
    if let Some(position) = content.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(KeyringError::BadHex {
            line,
            column: position + 1,
        });
    }
    let mut key = [0u8; KEY_LEN];
    // Cannot fail after the checks above; map defensively rather than panic.
    hex::decode_to_slice(content, &mut key)
        .map_err(|_| KeyringError::BadHex { line, column: 1 })?;
    Ok(key)
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "gossip keyring is readable by group or others; anyone who can read it can join the mesh"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "FFEEDDCCBBAA99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn parses_keys_comments_and_blank_lines_in_order() {
        let text = format!("# ring\n\n  {A}  # primary\n{B}\n   \n# end\n");
        let ring = Keyring::parse(&text).unwrap();
        assert_eq!(ring.len(), 2);
        let ids: Vec<KeyId> = ring.key_ids().collect();
        assert_eq!(ids[0], ring.primary_id());
        let expected_a = KeyId::of(&hex::decode(A).unwrap().try_into().unwrap());
        assert_eq!(ring.primary_id(), expected_a);
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn crlf_line_endings_and_a_byte_order_mark_are_accepted() {
        let ring = Keyring::parse(&format!("\u{feff}{A}\r\n# c\r\n{B}\r\n")).unwrap();
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn errors_name_the_line_at_fault() {
        let short = format!("# c\n{A}\n\nabc\n");
        match Keyring::parse(&short) {
            Err(KeyringError::BadLength { line: 4, found: 3 }) => {}
            other => panic!("unexpected {other:?}"),
        }
        let bad_hex = format!("{A}\n{}g\n", &B[..63]);
        match Keyring::parse(&bad_hex) {
            Err(KeyringError::BadHex {
                line: 2,
                column: 64,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        let dup = format!("{A}\n{B}\n\n{}\n", A.to_uppercase());
        let err = Keyring::parse(&dup).unwrap_err();
        assert!(matches!(
            err,
            KeyringError::Duplicate {
                line: 4,
                first_line: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("line 4"), "{err}");
    }

    #[test]
    fn at_least_one_key_and_at_most_max() {
        assert!(matches!(
            Keyring::parse("# only comments\n\n"),
            Err(KeyringError::Empty)
        ));
        let mut rng = StdRng::seed_from_u64(7);
        let mut text = String::new();
        for _ in 0..=MAX_KEYS {
            let ring = Keyring::generate_from_rng(&mut rng);
            text.push_str(&ring.export_secret_text());
        }
        assert!(matches!(
            Keyring::parse(&text),
            Err(KeyringError::TooMany { .. })
        ));
    }

    #[test]
    fn debug_and_errors_never_show_key_material() {
        let ring = Keyring::parse(&format!("{A}\n{B}\n")).unwrap();
        let debug = format!("{ring:?}");
        assert!(debug.contains(&ring.primary_id().to_string()), "{debug}");
        for secret in [A, B] {
            let lower = secret.to_lowercase();
            assert!(!debug.to_lowercase().contains(&lower[..16]), "{debug}");
        }
        let err = Keyring::parse(&format!("{A}x\n")).unwrap_err().to_string();
        assert!(!err.contains(&A[..16]), "{err}");
    }

    #[test]
    fn export_round_trips_and_generate_differs() {
        let first = Keyring::generate();
        let second = Keyring::generate();
        assert_ne!(first.primary_id(), second.primary_id());
        let again = Keyring::parse(&first.export_secret_text()).unwrap();
        assert_eq!(again.primary_id(), first.primary_id());
    }

    #[test]
    fn load_reads_a_file_and_names_it_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gossip.keys");
        std::fs::write(&path, format!("{B}\n{A}\n")).unwrap();
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(ring.len(), 2);
        let missing = dir.path().join("absent.keys");
        let err = Keyring::load(&missing).unwrap_err();
        assert!(err.to_string().contains("absent.keys"), "{err}");
    }

    #[test]
    fn candidates_put_the_hinted_key_first_then_the_rest() {
        let ring = Keyring::parse(&format!("{A}\n{B}\n")).unwrap();
        let ids: Vec<KeyId> = ring.key_ids().collect();
        let order: Vec<KeyId> = ring.candidates(ids[1]).map(|k| k.id).collect();
        assert_eq!(order, vec![ids[1], ids[0]]);
        let unknown: Vec<KeyId> = ring.candidates(KeyId([0; 4])).map(|k| k.id).collect();
        assert_eq!(unknown, ids);
    }
}
