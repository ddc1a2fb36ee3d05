//! Embedding throughput on one file of sentences (one per line), for bench/vectors/embed.sh:
//! `embed-bench MODEL_DIR SENTENCES [THREADS] [BATCH] [OUT]` prints JSON as bench/vectors/embed_reference.py
//! does; with OUT it also writes the embeddings there, float32 little-endian rows (bench/vectors/minilm_data.sh
//! makes the vector benchmark's sentence data with it).

use loopline_embeddings::SentenceEncoder;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, directory, sentences, rest @ ..] = args.as_slice() else {
        return Err("usage: embed-bench MODEL_DIR SENTENCES [THREADS] [BATCH] [OUT]".into());
    };
    let threads: usize = match rest.first() {
        Some(threads) => threads.parse()?,
        None => std::thread::available_parallelism()?.get(),
    };
    let batch: usize = rest.get(1).map_or(Ok(32), |batch| batch.parse())?;
    let encoder = SentenceEncoder::load(std::path::Path::new(directory), "model")?;
    let text = std::fs::read_to_string(sentences)?;
    let lines: Vec<&str> = text.lines().collect();
    encoder.embed(&lines[..batch.min(lines.len())], threads)?;
    let mut out = match rest.get(2) {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    let started = Instant::now();
    for chunk in lines.chunks(batch) {
        let rows = encoder.embed(chunk, threads)?;
        if let Some(out) = out.as_mut() {
            for value in rows.vectors.iter().flatten() {
                std::io::Write::write_all(out, &value.to_le_bytes())?;
            }
        }
    }
    if let Some(mut out) = out {
        std::io::Write::flush(&mut out)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"sentences\": {}, \"seconds\": {seconds:.3}, \"per_second\": {:.1}, \"threads\": {threads}}}",
        lines.len(),
        lines.len() as f64 / seconds
    );
    Ok(())
}
