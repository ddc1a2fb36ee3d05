//! The benchmark's Loopline side (`bench/vectors/bench.py` runs it): builds a segment over raw float32 vectors
//! and measures build time, memory, and queries per second and recall@k at each `ef`, on one thread and on
//! all, without and with filters, and with int8.
//!
//! `vector-bench BASE QUERIES TRUTH DIM K M EF_CONSTRUCTION EFS [TRUTH_10 TRUTH_1]`: raw little-endian f32
//! files for the base and query vectors; TRUTH (and the optional filtered truths, for points whose number
//! is a multiple of 10 and of 100) as k u32 neighbour numbers per query; EFS comma-separated. Prints one JSON
//! object per line.
//!
//! Originals on disk (int8 walk, rescored from the file), as a server holds such a collection:
//! `vector-bench disk-build DIR BASE DIM M EF_CONSTRUCTION` writes a stored collection in DIR (batches of
//! 10,000 through the log, then a checkpoint); `vector-bench disk-query DIR QUERIES TRUTH DIM K EFS`, in a
//! fresh process, opens it and prints its resident memory and the queries' recall and speed. With
//! `VECTOR_BENCH_IN_MEMORY=1` disk-build keeps the float rows in the checkpoint instead (a collection without
//! `on_disk`), so changes to the walk can be timed on one stored graph by several builds of this example.

use loopline_vector_index::{
    Distance, FieldType, Filter, HnswParams, Operation, Point, PointId, Query, Segment, StoredCollection, VectorParams,
};
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

fn read_f32(path: &str, dim: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    values.chunks_exact(dim).map(<[f32]>::to_vec).collect()
}

fn read_truth(path: &str, k: usize) -> Vec<Vec<u64>> {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let values: Vec<u64> = bytes
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    values.chunks_exact(k).map(<[u64]>::to_vec).collect()
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Run<'a> {
    segment: &'a Segment,
    queries: &'a [Vec<f32>],
    truth: &'a [Vec<u64>],
    k: usize,
    filter: Option<&'a Filter>,
    int8: bool,
}

/// Recall@k and queries per second at one `ef` on `threads` threads.
fn measure(run: &Run<'_>, ef: usize, threads: usize) -> (f64, f64) {
    // The best of three passes, as bench.py times the reference tools.
    (0..3)
        .map(|_| measure_once(run, ef, threads))
        .fold((0.0, 0.0), |best, pass| if pass.1 > best.1 { pass } else { best })
}

/// One pass over the queries.
fn measure_once(run: &Run<'_>, ef: usize, threads: usize) -> (f64, f64) {
    let started = Instant::now();
    let chunk = run.queries.len().div_ceil(threads);
    let found: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = run
            .queries
            .chunks(chunk)
            .map(|queries| {
                scope.spawn(move || {
                    queries
                        .iter()
                        .map(|vector| {
                            let query = Query {
                                using: "",
                                vector,
                                limit: run.k,
                                offset: 0,
                                filter: run.filter,
                                ef: Some(ef),
                                exact: false,
                                score_threshold: None,
                                use_int8: run.int8,
                                rescore: loopline_vector_index::Rescore::All,
                            };
                            let hits = run.segment.search(&query).expect("search");
                            hits.iter()
                                .map(|hit| match hit.id {
                                    PointId::Num(number) => number,
                                    PointId::Uuid(_) => u64::MAX,
                                })
                                .collect()
                        })
                        .collect::<Vec<Vec<u64>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let hits: usize = found
        .iter()
        .zip(run.truth)
        .map(|(got, want)| {
            let want: HashSet<&u64> = want.iter().take(run.k).collect();
            got.iter().filter(|id| want.contains(id)).count()
        })
        .sum();
    (
        hits as f64 / (run.k * run.queries.len()) as f64,
        run.queries.len() as f64 / seconds,
    )
}

/// `disk-build DIR BASE DIM M EF_CONSTRUCTION`.
fn disk_build(args: &[String]) {
    let dim: usize = args[3].parse().expect("DIM");
    let m: usize = args[4].parse().expect("M");
    let ef_construction: usize = args[5].parse().expect("EF_CONSTRUCTION");
    let base = read_f32(&args[2], dim);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let params = VectorParams {
        size: dim,
        distance: Distance::Cosine,
        hnsw: HnswParams { m, ef_construction },
        full_scan_threshold_kb: 0,
        int8: true,
        // `VECTOR_BENCH_IN_MEMORY=1` keeps the float rows in the checkpoint, for timing walks on a stored graph.
        on_disk: std::env::var_os("VECTOR_BENCH_IN_MEMORY").is_none(),
    };
    let dir = std::path::Path::new(&args[1]);
    let started = Instant::now();
    let mut collection =
        StoredCollection::create(dir, BTreeMap::from([(String::new(), params)]), threads).expect("create");
    for (batch, vectors) in base.chunks(10_000).enumerate() {
        let points = vectors
            .iter()
            .enumerate()
            .map(|(offset, vector)| Point {
                id: PointId::Num((batch * 10_000 + offset) as u64),
                vectors: BTreeMap::from([(String::new(), vector.clone())]),
                payload: serde_json::Value::Null,
            })
            .collect();
        collection.apply(Operation::Upsert(points)).expect("upsert");
    }
    collection.checkpoint().expect("checkpoint");
    let memory = collection.segment().memory()[""];
    println!(
        "{}",
        serde_json::json!({"kind": "disk-build", "seconds": started.elapsed().as_secs_f64(), "threads": threads,
            "float_bytes_in_memory": memory.0, "int8_bytes": memory.1, "graph_bytes": memory.2,
            "float_bytes_on_disk": collection.segment().disk_bytes()[""]})
    );
}

/// `disk-query DIR QUERIES TRUTH DIM K EFS`.
fn disk_query(args: &[String]) {
    let dim: usize = args[4].parse().expect("DIM");
    let k: usize = args[5].parse().expect("K");
    let efs: Vec<usize> = args[6].split(',').map(|ef| ef.parse().expect("EFS")).collect();
    let queries = read_f32(&args[2], dim);
    let truth = read_truth(&args[3], k);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let before = rss_mib();
    let started = Instant::now();
    let collection = StoredCollection::open(std::path::Path::new(&args[1]), threads).expect("open");
    println!(
        "{}",
        serde_json::json!({"kind": "disk-open", "seconds": started.elapsed().as_secs_f64(),
            "rss_mib": rss_mib(), "rss_growth_mib": rss_mib() - before})
    );
    let run = Run {
        segment: collection.segment(),
        queries: &queries,
        truth: &truth,
        k,
        filter: None,
        int8: true,
    };
    for &ef in &efs {
        for used in [1, threads] {
            let (recall, qps) = measure(&run, ef, used);
            println!(
                "{}",
                serde_json::json!({"kind": "disk-query", "ef": ef, "threads": used, "recall": recall, "qps": qps,
                    "rss_mib": rss_mib()})
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("disk-build") if args.len() == 7 => return disk_build(&args[1..]),
        Some("disk-query") if args.len() == 8 => return disk_query(&args[1..]),
        Some("disk-build" | "disk-query") => {
            eprintln!(
                "usage: vector-bench disk-build DIR BASE DIM M EF_CONSTRUCTION | disk-query DIR QUERIES TRUTH DIM K EFS"
            );
            std::process::exit(2);
        }
        _ => {}
    }
    if args.len() < 9 {
        eprintln!("usage: vector-bench BASE QUERIES TRUTH DIM K M EF_CONSTRUCTION EFS [TRUTH_10 TRUTH_1]");
        std::process::exit(2);
    }
    let dim: usize = args[4].parse().expect("DIM");
    let k: usize = args[5].parse().expect("K");
    let m: usize = args[6].parse().expect("M");
    let ef_construction: usize = args[7].parse().expect("EF_CONSTRUCTION");
    let efs: Vec<usize> = args[8].split(',').map(|ef| ef.parse().expect("EFS")).collect();
    let base = read_f32(&args[1], dim);
    let queries = read_f32(&args[2], dim);
    let truth = read_truth(&args[3], k);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    for int8 in [false, true] {
        let params = VectorParams {
            size: dim,
            distance: Distance::Cosine,
            hnsw: HnswParams { m, ef_construction },
            full_scan_threshold_kb: 0,
            int8,
            on_disk: false,
        };
        let before = rss_mib();
        let mut segment = Segment::new(BTreeMap::from([(String::new(), params)]), threads);
        let points: Vec<Point> = base
            .iter()
            .enumerate()
            .map(|(number, vector)| Point {
                id: PointId::Num(number as u64),
                vectors: BTreeMap::from([(String::new(), vector.clone())]),
                payload: serde_json::json!({"every_10": number % 10 == 0, "every_100": number % 100 == 0}),
            })
            .collect();
        let started = Instant::now();
        segment.upsert(points, 1, "points").expect("upsert");
        let build = started.elapsed().as_secs_f64();
        let memory = segment.memory()[""];
        println!(
            "{}",
            serde_json::json!({"kind": "build", "int8": int8, "seconds": build, "threads": threads,
                "float_bytes": memory.0, "int8_bytes": memory.1, "graph_bytes": memory.2, "rss_growth_mib": rss_mib() - before})
        );
        let run = Run {
            segment: &segment,
            queries: &queries,
            truth: &truth,
            k,
            filter: None,
            int8,
        };
        for &ef in &efs {
            for used in [1, threads] {
                let (recall, qps) = measure(&run, ef, used);
                println!(
                    "{}",
                    serde_json::json!({"kind": "query", "int8": int8, "ef": ef, "threads": used, "recall": recall, "qps": qps})
                );
            }
        }
        if int8 || args.len() < 11 {
            continue;
        }
        for indexed in [false, true] {
            if indexed {
                segment.create_index("every_10", FieldType::Bool).expect("index");
                segment.create_index("every_100", FieldType::Bool).expect("index");
            }
            for (key, path) in [("every_10", &args[9]), ("every_100", &args[10])] {
                let filtered_truth = read_truth(path, k);
                let filter = Filter::from_json(
                    &serde_json::json!({"must": [{"key": key, "match": {"value": true}}]}),
                    "filter",
                )
                .expect("filter");
                // Unindexed filters test every point's payload: at a million points a query takes a tenth of
                // a second, so those runs use the first 100 queries.
                let used = if indexed { queries.len() } else { queries.len().min(100) };
                let run = Run {
                    segment: &segment,
                    queries: &queries[..used],
                    truth: &filtered_truth[..used],
                    k,
                    filter: Some(&filter),
                    int8,
                };
                for &ef in &efs {
                    // One pass unindexed (each takes seconds at a million points).
                    let (recall, qps) = if indexed {
                        measure(&run, ef, 1)
                    } else {
                        measure_once(&run, ef, 1)
                    };
                    println!(
                        "{}",
                        serde_json::json!({"kind": "filtered", "filter": key, "indexed": indexed, "ef": ef, "threads": 1, "recall": recall, "qps": qps})
                    );
                }
            }
        }
    }
}
