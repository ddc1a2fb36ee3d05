//! A segment written whole to one file: what a checkpoint leaves, loaded at start without rebuilding any
//! graph. Layout: a magic string, then fields in order (see `encode`), then a CRC-32 of everything before
//! it. Every count read back is checked against the bytes that remain before memory is reserved, and the
//! graph's links are checked to stay inside the segment. The float vectors of a vector kept on disk are
//! not in it but named: a file beside it (see `vector_file`), its row count and the rows' CRC-32.

use super::codec::{DecodeError, Reader, Writer};
use crate::distance::Distance;
use crate::hnsw::{Graph, HnswParams};
use crate::payload_index::FieldType;
use crate::quantize::Int8Vectors;
use crate::segment::{Segment, VectorParams, VectorSpace};
use crate::vectors::FloatVectors;
use std::collections::BTreeMap;
use std::path::Path;

/// The first format (no `on_disk`, vectors always inline), still read.
const MAGIC_V1: &[u8; 8] = b"LLVSEG01";
const MAGIC: &[u8; 8] = b"LLVSEG02";

/// How a vector's float rows are written.
const INLINE: u8 = 0;
const IN_FILE: u8 = 1;

/// Where `encode` puts float vectors kept on disk.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vectors {
    /// In the bytes themselves (a snapshot, which must stand alone).
    Inline,
    /// Named by their file when all their rows are in it (a checkpoint).
    Files,
}

fn distance_code(distance: Distance) -> u8 {
    match distance {
        Distance::Cosine => 0,
        Distance::Dot => 1,
        Distance::Euclid => 2,
        Distance::Manhattan => 3,
    }
}

fn distance_of(code: u8) -> Result<Distance, DecodeError> {
    Ok(match code {
        0 => Distance::Cosine,
        1 => Distance::Dot,
        2 => Distance::Euclid,
        3 => Distance::Manhattan,
        other => return Err(DecodeError(format!("unknown distance {other}"))),
    })
}

/// The segment's bytes, stamped with the last operation it holds.
pub(crate) fn encode(segment: &Segment, last_operation: u64, vectors: Vectors) -> std::io::Result<Vec<u8>> {
    let mut out = Writer::default();
    out.bytes.extend_from_slice(MAGIC);
    out.u64(last_operation);
    out.len(segment.ids.len());
    segment.ids.iter().for_each(|id| out.id(*id));
    out.len(segment.versions.len());
    segment.versions.iter().for_each(|version| out.u64(*version));
    out.blob(
        &segment
            .deleted
            .iter()
            .map(|deleted| u8::from(*deleted))
            .collect::<Vec<_>>(),
    );
    out.len(segment.payloads.len());
    segment.payloads.iter().for_each(|payload| out.json(payload));
    out.len(segment.indexes.len());
    for (key, index) in &segment.indexes {
        out.str(key);
        out.str(index.field_type().name());
    }
    out.len(segment.spaces.len());
    for (name, space) in &segment.spaces {
        let params = &space.params;
        out.str(name);
        out.len(params.size);
        out.u8(distance_code(params.distance));
        out.len(params.hnsw.m);
        out.len(params.hnsw.ef_construction);
        out.len(params.full_scan_threshold_kb);
        out.u8(u8::from(params.int8));
        out.u8(u8::from(params.on_disk));
        out.blob(
            &space
                .present
                .iter()
                .map(|present| u8::from(*present))
                .collect::<Vec<_>>(),
        );
        match space.vectors.disk() {
            Some(disk) if vectors == Vectors::Files && disk.rows == space.vectors.len() => {
                out.u8(IN_FILE);
                out.str(&disk.name);
                out.len(disk.rows);
                out.u32(disk.checksum);
            }
            _ => {
                out.u8(INLINE);
                out.len(space.vectors.len() * params.size);
                space.vectors.for_each_run(0, |run| {
                    out.bytes.reserve(run.len() * 4);
                    run.iter()
                        .for_each(|value| out.bytes.extend_from_slice(&value.to_le_bytes()));
                    Ok(())
                })?;
            }
        }
        let (levels, base, upper, entry) = space.graph.to_parts();
        out.blob(&levels);
        out.u32s(base.into_iter());
        out.len(upper.len());
        upper.iter().for_each(|layers| out.u32s(layers.iter().copied()));
        out.u64(entry);
        match &space.int8 {
            Some(int8) => {
                out.u8(1);
                let (low, step, codes, corrections) = int8.to_parts();
                out.f32(low);
                out.f32(step);
                out.blob(codes);
                out.f32s(corrections);
                out.len(space.fitted_at);
            }
            None => out.u8(0),
        }
    }
    let checksum = crc32fast::hash(&out.bytes);
    out.u32(checksum);
    Ok(out.bytes)
}

/// A segment read back from its bytes, and the last operation it holds. Vectors kept in files are opened
/// (and checked) in `dir`; without one (a snapshot), a segment naming such a file is refused.
pub(crate) fn decode(bytes: &[u8], threads: usize, dir: Option<&Path>) -> Result<(Segment, u64), DecodeError> {
    if bytes.len() < MAGIC.len() + 4 || (&bytes[..MAGIC.len()] != MAGIC && &bytes[..MAGIC.len()] != MAGIC_V1) {
        return Err(DecodeError("not a Loopline vector segment".into()));
    }
    let first_format = &bytes[..MAGIC.len()] == MAGIC_V1;
    let (body, stored) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]) {
        return Err(DecodeError(
            "the segment's checksum does not match: the file is damaged".into(),
        ));
    }
    let mut input = Reader::new(&body[MAGIC.len()..]);
    let last_operation = input.u64()?;
    let count = input.len(9)?;
    let ids = (0..count).map(|_| input.id()).collect::<Result<Vec<_>, _>>()?;
    let versions_count = input.len(8)?;
    let versions = (0..versions_count)
        .map(|_| input.u64())
        .collect::<Result<Vec<_>, _>>()?;
    let deleted: Vec<bool> = input.blob()?.iter().map(|byte| *byte != 0).collect();
    let payloads_count = input.len(8)?;
    let payloads = (0..payloads_count)
        .map(|_| input.json())
        .collect::<Result<Vec<_>, _>>()?;
    if versions.len() != count || deleted.len() != count || payloads.len() != count {
        return Err(DecodeError("the segment's point arrays differ in length".into()));
    }
    let index_count = input.len(16)?;
    let mut index_keys = Vec::with_capacity(index_count);
    for _ in 0..index_count {
        let key = input.str()?;
        let name = input.str()?;
        let field_type =
            FieldType::from_name(&name).ok_or_else(|| DecodeError(format!("unknown index type {name}")))?;
        index_keys.push((key, field_type));
    }
    let space_count = input.len(16)?;
    let mut spaces = BTreeMap::new();
    for _ in 0..space_count {
        let name = input.str()?;
        let size = input.number()?;
        let distance = distance_of(input.u8()?)?;
        let m = input.number()?;
        let ef_construction = input.number()?;
        let full_scan_threshold_kb = input.number()?;
        let int8_wanted = input.u8()? != 0;
        let on_disk = !first_format && input.u8()? != 0;
        let params = VectorParams {
            size,
            distance,
            hnsw: HnswParams { m, ef_construction },
            full_scan_threshold_kb,
            int8: int8_wanted,
            on_disk,
        };
        if size == 0 || size > crate::segment::MAX_DIMENSION || !(2..=512).contains(&m) {
            return Err(DecodeError(format!("vector '{name}' has parameters out of range")));
        }
        let present: Vec<bool> = input.blob()?.iter().map(|byte| *byte != 0).collect();
        let vectors = match if first_format { INLINE } else { input.u8()? } {
            INLINE => FloatVectors::from_data(size, distance, input.f32s_flat()?).map_err(DecodeError)?,
            IN_FILE => {
                let file = input.str()?;
                let rows = input.number()?;
                let checksum = input.u32()?;
                let dir = dir.ok_or_else(|| {
                    DecodeError(format!(
                        "vector '{name}' names a file ({file}) instead of holding its vectors"
                    ))
                })?;
                let rows = super::vector_file::open(dir, &file, rows, size, checksum)?;
                FloatVectors::from_disk(size, distance, rows)
            }
            other => return Err(DecodeError(format!("vector '{name}': unknown vector layout {other}"))),
        };
        let levels = input.bytes()?;
        let base = input.u32s()?;
        let upper_count = input.len(8)?;
        let upper = (0..upper_count).map(|_| input.u32s()).collect::<Result<Vec<_>, _>>()?;
        let entry = input.u64()?;
        let graph = Graph::from_parts(params.hnsw, levels, base, upper, entry).map_err(DecodeError)?;
        let (int8, fitted_at) = match input.u8()? {
            0 => (None, 0),
            _ => {
                let low = input.f32()?;
                let step = input.f32()?;
                let codes = input.bytes_flat()?;
                let corrections = input.f32s()?;
                let fitted_at = input.number()?;
                let int8 =
                    Int8Vectors::from_parts(size, distance, low, step, codes, corrections).map_err(DecodeError)?;
                if int8.len() != count {
                    return Err(DecodeError(format!("vector '{name}': int8 copy of the wrong length")));
                }
                (Some(int8), fitted_at)
            }
        };
        if present.len() != count || vectors.len() != count || graph.len() > count {
            return Err(DecodeError(format!("vector '{name}': arrays of the wrong length")));
        }
        spaces.insert(
            name,
            VectorSpace {
                params,
                vectors,
                present,
                graph,
                int8,
                fitted_at,
            },
        );
    }
    if input.remaining() != 0 {
        return Err(DecodeError("the segment has trailing bytes".into()));
    }
    let mut by_id = BTreeMap::new();
    for (node, id) in ids.iter().enumerate() {
        if !deleted[node] && by_id.insert(*id, node as u32).is_some() {
            return Err(DecodeError(format!("point {id} is live twice")));
        }
    }
    let mut segment = Segment {
        spaces,
        ids,
        by_id,
        payloads,
        versions,
        deleted,
        indexes: BTreeMap::new(),
        threads: threads.max(1),
        identity: crate::segment::next_identity(),
    };
    for (key, field_type) in index_keys {
        segment.create_index(&key, field_type).map_err(DecodeError)?;
    }
    // Points written but not yet linked when this checkpoint was taken are linked now.
    segment.link_unlinked();
    Ok((segment, last_operation))
}
