//! [`ChunkBytes`]: the bytes of one file chunk, held as the pieces they arrived in.
//!
//! A chunk travels from the leader's memory map to the follower's file without being joined
//! into one buffer anywhere: the leader hands out a view of its mapped file (one piece, no
//! copy), a transport hands over the pieces its connection delivered, and the follower writes
//! each piece at its offset. Joining them would copy every recovered byte once more.

use bytes::Bytes;

/// The bytes of a chunk, in order, as one or more pieces. Cheap to clone (pieces are shared).
#[derive(Clone, Debug, Default)]
pub struct ChunkBytes {
    pieces: Vec<Bytes>,
    length: usize,
}

impl ChunkBytes {
    /// A chunk made of `pieces`, in order (empty pieces are dropped).
    pub fn from_pieces(pieces: Vec<Bytes>) -> ChunkBytes {
        let pieces: Vec<Bytes> = pieces
            .into_iter()
            .filter(|piece| !piece.is_empty())
            .collect();
        let length = pieces.iter().map(Bytes::len).sum();
        ChunkBytes { pieces, length }
    }

    /// Bytes in the chunk.
    pub fn len(&self) -> usize {
        self.length
    }

    /// True when the chunk holds no byte.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The pieces, in order; together they are the chunk.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// CRC-32 (IEEE, as `crc32fast` and tantivy's footers compute it) of the chunk.
    pub fn crc32(&self) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        for piece in &self.pieces {
            hasher.update(piece);
        }
        hasher.finalize()
    }

    /// The chunk as one contiguous buffer: a piece shared as it is when there is only one,
    /// else a copy.
    pub fn to_bytes(&self) -> Bytes {
        match self.pieces.as_slice() {
            [] => Bytes::new(),
            [piece] => piece.clone(),
            pieces => Bytes::from(pieces.concat()),
        }
    }

    /// The chunk copied into a vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.pieces.concat()
    }
}

impl From<Bytes> for ChunkBytes {
    fn from(bytes: Bytes) -> ChunkBytes {
        ChunkBytes::from_pieces(vec![bytes])
    }
}

impl From<Vec<u8>> for ChunkBytes {
    fn from(bytes: Vec<u8>) -> ChunkBytes {
        ChunkBytes::from(Bytes::from(bytes))
    }
}

/// Chunks are equal when their bytes are, however they are cut into pieces.
impl PartialEq for ChunkBytes {
    fn eq(&self, other: &ChunkBytes) -> bool {
        if self.length != other.length {
            return false;
        }
        let mut left = self.pieces.iter().flat_map(|piece| piece.iter());
        let mut right = other.pieces.iter().flat_map(|piece| piece.iter());
        left.by_ref().zip(right.by_ref()).all(|(a, b)| a == b)
    }
}

impl Eq for ChunkBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_make_the_same_chunk_however_they_are_cut() {
        let whole: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let one = ChunkBytes::from(whole.clone());
        let cut = ChunkBytes::from_pieces(vec![
            Bytes::copy_from_slice(&whole[..3]),
            Bytes::new(),
            Bytes::copy_from_slice(&whole[3..999]),
            Bytes::copy_from_slice(&whole[999..]),
        ]);
        assert_eq!(cut.pieces().len(), 3);
        assert_eq!(one, cut);
        assert_eq!(cut.len(), 1000);
        assert_eq!(cut.to_vec(), whole);
        assert_eq!(cut.to_bytes(), Bytes::from(whole.clone()));
        assert_eq!(cut.crc32(), crc32fast::hash(&whole));
        assert_eq!(one.crc32(), cut.crc32());
        let mut changed = whole.clone();
        changed[500] ^= 1;
        assert_ne!(ChunkBytes::from(changed), cut);
        assert_ne!(ChunkBytes::from(whole[..999].to_vec()), cut);
        assert!(ChunkBytes::default().is_empty());
    }
}
