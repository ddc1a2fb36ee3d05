//! Searching: the universal `points/query` (nearest by vector or by point id, prefetch with RRF or DBSF
//! fusion, no query meaning id order) and the legacy `points/search`, each with its batch form.

use crate::envelope::{QdrantError, blocking, ok, read};
use crate::select::{self, WithPayload, WithVector};
use crate::{Target, VectorApi};
use axum::body::Body;
use axum::response::Response;
use loopline_vector_index::filter::Condition;
use loopline_vector_index::{Filter, Hit, PointId, Query, Rescore, Segment};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Instant;

/// Most results one query may ask for (limit plus offset).
const MAX_RESULTS: usize = 100_000;
/// Most searches in one batch, and most prefetches in one query (all levels).
const MAX_SEARCHES: usize = 1_000;
/// Deepest prefetch nesting.
const MAX_PREFETCH_DEPTH: usize = 8;

/// What a query ranks by.
enum Kind {
    /// Nearest to a vector.
    Nearest(Vec<f32>),
    /// Nearest to a stored point's vector (the point itself left out).
    NearestTo(PointId),
    /// Reciprocal rank fusion of the prefetches, with its constant.
    Rrf(f64),
    /// Distribution-based score fusion of the prefetches.
    Dbsf,
}

/// A parsed query (or prefetch).
struct Plan {
    kind: Option<Kind>,
    using: String,
    prefetch: Vec<Plan>,
    filter: Option<Filter>,
    ef: Option<usize>,
    exact: bool,
    use_int8: bool,
    rescore: Rescore,
    limit: usize,
    offset: usize,
    score_threshold: Option<f32>,
}

fn number(body: &Map<String, Value>, key: &str, at: &str, default: usize) -> Result<usize, QdrantError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value
            .as_u64()
            .and_then(|number| usize::try_from(number).ok())
            .filter(|number| *number <= MAX_RESULTS)
            .ok_or_else(|| QdrantError::format(format!("{at}{key}: an integer from 0 to {MAX_RESULTS}"))),
    }
}

/// A query's `params`.
struct SearchParams {
    ef: Option<usize>,
    exact: bool,
    use_int8: bool,
    rescore: Rescore,
}

/// `params`: `hnsw_ef`, `exact`, `quantization` (`ignore`, `rescore`, `oversampling`).
fn search_params(body: &Map<String, Value>, at: &str) -> Result<SearchParams, QdrantError> {
    let Some(params) = body.get("params").filter(|value| !value.is_null()) else {
        return Ok(SearchParams {
            ef: None,
            exact: false,
            use_int8: true,
            rescore: Rescore::All,
        });
    };
    let params = params
        .as_object()
        .ok_or_else(|| QdrantError::format(format!("{at}params: an object is expected")))?;
    let ef = match params.get("hnsw_ef") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|ef| usize::try_from(ef).ok())
                .filter(|ef| *ef <= MAX_RESULTS)
                .ok_or_else(|| QdrantError::format(format!("{at}params.hnsw_ef: a positive integer")))?,
        ),
    };
    let flag = |value: Option<&Value>, name: &str| match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(QdrantError::format(format!("{at}params.{name}: true or false"))),
    };
    let exact = flag(params.get("exact"), "exact")?;
    let quantization = match params.get("quantization") {
        None | Some(Value::Null) => None,
        Some(Value::Object(quantization)) => Some(quantization),
        Some(_) => {
            return Err(QdrantError::format(format!(
                "{at}params.quantization: an object is expected"
            )));
        }
    };
    let field = |name: &str| quantization.and_then(|quantization| quantization.get(name));
    let ignore = flag(field("ignore"), "quantization.ignore")?;
    // Qdrant rescores unless told not to; without `oversampling` every candidate of the walk is rescored.
    let oversampling = match field("oversampling") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_f64()
                .filter(|factor| factor.is_finite() && *factor >= 1.0)
                .ok_or_else(|| {
                    QdrantError::format(format!("{at}params.quantization.oversampling: a number of at least 1"))
                })?,
        ),
    };
    let rescore = match (flag(field("rescore"), "quantization.rescore")?, field("rescore")) {
        (false, Some(Value::Bool(false))) => Rescore::Off,
        _ => oversampling.map_or(Rescore::All, Rescore::Oversampled),
    };
    Ok(SearchParams {
        ef,
        exact,
        use_int8: !ignore,
        rescore,
    })
}

fn threshold(body: &Map<String, Value>, at: &str) -> Result<Option<f32>, QdrantError> {
    match body.get("score_threshold") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|score| score.is_finite())
            .map(|score| Some(score as f32))
            .ok_or_else(|| QdrantError::format(format!("{at}score_threshold: a number"))),
    }
}

/// What `query` names.
fn kind(value: &Value, at: &str) -> Result<Kind, QdrantError> {
    match value {
        Value::Array(items) if items.first().is_some_and(Value::is_array) => Err(QdrantError::wrong_input(format!(
            "{at}: multi-vector queries are not supported"
        ))),
        Value::Array(_) => Ok(Kind::Nearest(select::dense(value, at)?)),
        Value::Number(_) | Value::String(_) => Ok(Kind::NearestTo(
            PointId::from_json(value).map_err(|message| QdrantError::format(format!("{at}: {message}")))?,
        )),
        Value::Object(map) => {
            if let Some(inner) = map.get("nearest") {
                return kind(inner, &format!("{at}.nearest"));
            }
            if let Some(fusion) = map.get("fusion") {
                return match fusion.as_str() {
                    Some("rrf") => Ok(Kind::Rrf(2.0)),
                    Some("dbsf") => Ok(Kind::Dbsf),
                    _ => Err(QdrantError::format(format!("{at}.fusion: `rrf` or `dbsf`"))),
                };
            }
            if let Some(rrf) = map.get("rrf") {
                let k = match rrf.get("k") {
                    None | Some(Value::Null) => 2.0,
                    Some(value) => value
                        .as_f64()
                        .filter(|k| k.is_finite() && *k > 0.0)
                        .ok_or_else(|| QdrantError::format(format!("{at}.rrf.k: a positive number")))?,
                };
                return Ok(Kind::Rrf(k));
            }
            if map.contains_key("indices") {
                return Err(QdrantError::wrong_input(format!(
                    "{at}: sparse vectors are not supported"
                )));
            }
            let named = map.keys().next().map(String::as_str).unwrap_or("empty object");
            Err(QdrantError::wrong_input(format!(
                "{at}: '{named}' queries are not supported (nearest, fusion, rrf are)"
            )))
        }
        _ => Err(QdrantError::format(format!(
            "{at}: a vector, a point id, or a query object"
        ))),
    }
}

/// What one request may ask for in all, prefetches and batches included: searches, and result rows (the
/// limit plus offset of each), so a small body cannot ask for gigabytes of results.
pub(crate) struct Budget {
    searches: usize,
    rows: usize,
}

impl Budget {
    fn new() -> Self {
        Budget {
            searches: MAX_SEARCHES,
            rows: MAX_RESULTS,
        }
    }

    fn take(&mut self, rows: usize, at: &str) -> Result<(), QdrantError> {
        self.searches = self
            .searches
            .checked_sub(1)
            .ok_or_else(|| QdrantError::format(format!("{at}: more than {MAX_SEARCHES} searches in one request")))?;
        self.rows = self.rows.checked_sub(rows).ok_or_else(|| {
            QdrantError::format(format!(
                "{at}limit: the searches of one request may ask for {MAX_RESULTS} results in all (limit plus offset)"
            ))
        })?;
        Ok(())
    }
}

fn plan(body: &Map<String, Value>, at: &str, depth: usize, budget: &mut Budget) -> Result<Plan, QdrantError> {
    if depth > MAX_PREFETCH_DEPTH {
        return Err(QdrantError::format(format!(
            "{at}: prefetches nest deeper than {MAX_PREFETCH_DEPTH} levels"
        )));
    }
    let (limit, offset) = (number(body, "limit", at, 10)?, number(body, "offset", at, 0)?);
    budget.take(limit.saturating_add(offset), at)?;
    if body.get("lookup_from").is_some_and(|value| !value.is_null()) {
        return Err(QdrantError::wrong_input(format!(
            "{at}lookup_from: looking up vectors in another collection is not supported"
        )));
    }
    let prefetch = match body.get("prefetch") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(inner)) => vec![plan(inner, &format!("{at}prefetch."), depth + 1, budget)?],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let inner = item
                    .as_object()
                    .ok_or_else(|| QdrantError::format(format!("{at}prefetch[{index}]: an object")))?;
                plan(inner, &format!("{at}prefetch[{index}]."), depth + 1, budget)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(QdrantError::format(format!(
                "{at}prefetch: an object or a list of them"
            )));
        }
    };
    let kind = match body.get("query") {
        None | Some(Value::Null) => None,
        Some(value) => Some(kind(value, &format!("{at}query"))?),
    };
    if matches!(kind, Some(Kind::Rrf(_) | Kind::Dbsf)) && prefetch.is_empty() {
        return Err(QdrantError::wrong_input(format!(
            "{at}query: fusion needs prefetches to fuse"
        )));
    }
    let using = match body.get("using") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(QdrantError::format(format!("{at}using: a vector name"))),
    };
    let SearchParams {
        ef,
        exact,
        use_int8,
        rescore,
    } = search_params(body, at)?;
    let filter = match body.get("filter") {
        None | Some(Value::Null) => None,
        Some(value) => Some(Filter::from_json(value, &format!("{at}filter")).map_err(QdrantError::format)?),
    };
    // The outer filter holds for what the prefetches find too (as Qdrant applies it), so fusion ranks only
    // points that pass it.
    let mut prefetch = prefetch;
    if let Some(outer) = &filter {
        prefetch.iter_mut().for_each(|inner| push_down(inner, outer));
    }
    Ok(Plan {
        kind,
        using,
        prefetch,
        filter,
        ef,
        exact,
        use_int8,
        rescore,
        limit,
        offset,
        score_threshold: threshold(body, at)?,
    })
}

/// Adds `outer` to a prefetch's own filter, and to its prefetches'.
fn push_down(plan: &mut Plan, outer: &Filter) {
    plan.filter = Some(match plan.filter.take() {
        None => outer.clone(),
        Some(own) => Filter {
            must: vec![
                Condition::Filter(Box::new(outer.clone())),
                Condition::Filter(Box::new(own)),
            ],
            ..Filter::default()
        },
    });
    plan.prefetch.iter_mut().for_each(|inner| push_down(inner, outer));
}

/// Runs a plan: its hits, best first (limit and offset applied).
fn run(plan: &Plan, segment: &Segment) -> Result<Vec<Hit>, QdrantError> {
    let wanted = plan.limit.saturating_add(plan.offset);
    let found = if !plan.prefetch.is_empty() {
        let lists = plan
            .prefetch
            .iter()
            .map(|inner| run(inner, segment))
            .collect::<Result<Vec<_>, _>>()?;
        let fused = match &plan.kind {
            Some(Kind::Rrf(k)) => fuse_ranks(&lists, *k),
            Some(Kind::Dbsf) => fuse_distributions(&lists),
            Some(Kind::Nearest(vector)) => rerank(plan, segment, vector, &lists, None)?,
            Some(Kind::NearestTo(id)) => {
                let vector = stored_vector(segment, &plan.using, *id)?;
                rerank(plan, segment, &vector, &lists, Some(*id))?
            }
            None => {
                let mut seen = std::collections::HashSet::new();
                lists.into_iter().flatten().filter(|hit| seen.insert(hit.id)).collect()
            }
        };
        // The outer query's filter and threshold hold for fused results too (the nearest kinds apply them
        // while ranking).
        let mut fused = fused;
        if let Some(filter) = &plan.filter {
            fused.retain(|hit| segment.passes(hit.node, filter));
        }
        if let (Some(threshold), Some(Kind::Rrf(_) | Kind::Dbsf)) = (plan.score_threshold, &plan.kind) {
            fused.retain(|hit| hit.score >= threshold);
        }
        fused
    } else {
        match &plan.kind {
            Some(Kind::Nearest(vector)) => nearest(plan, segment, vector, None)?,
            Some(Kind::NearestTo(id)) => {
                let vector = stored_vector(segment, &plan.using, *id)?;
                nearest(plan, segment, &vector, Some(*id))?
            }
            Some(Kind::Rrf(_) | Kind::Dbsf) => Vec::new(),
            None => {
                let (page, _) = segment.scroll(None, wanted, plan.filter.as_ref());
                page.into_iter()
                    .map(|node| Hit {
                        node,
                        id: segment.record(node, false).id,
                        score: 0.0,
                    })
                    .collect()
            }
        }
    };
    Ok(found.into_iter().skip(plan.offset).take(plan.limit).collect())
}

fn stored_vector(segment: &Segment, using: &str, id: PointId) -> Result<Vec<f32>, QdrantError> {
    if segment.node_of(id).is_none() {
        let message = format!("Not found: No point with id {id} found");
        return Err(QdrantError::new(axum::http::StatusCode::NOT_FOUND, message));
    }
    segment.vector_of(using, id).ok_or_else(|| {
        let name = if using.is_empty() {
            "the unnamed vector".to_string()
        } else {
            format!("vector '{using}'")
        };
        QdrantError::wrong_input(format!("query: point {id} has no {name} to search with"))
    })
}

fn nearest(
    plan: &Plan,
    segment: &Segment,
    vector: &[f32],
    leave_out: Option<PointId>,
) -> Result<Vec<Hit>, QdrantError> {
    let extra = usize::from(leave_out.is_some());
    let query = Query {
        using: &plan.using,
        vector,
        limit: plan.limit.saturating_add(plan.offset).saturating_add(extra),
        offset: 0,
        filter: plan.filter.as_ref(),
        ef: plan.ef,
        exact: plan.exact,
        score_threshold: plan.score_threshold,
        use_int8: plan.use_int8,
        rescore: plan.rescore,
    };
    let hits = segment.search(&query)?;
    Ok(hits.into_iter().filter(|hit| Some(hit.id) != leave_out).collect())
}

/// Ranks the prefetches' points by the outer query's vector (its filter and threshold applied).
fn rerank(
    plan: &Plan,
    segment: &Segment,
    vector: &[f32],
    lists: &[Vec<Hit>],
    leave_out: Option<PointId>,
) -> Result<Vec<Hit>, QdrantError> {
    let mut nodes: Vec<u32> = lists.iter().flatten().map(|hit| hit.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    if let Some(filter) = &plan.filter {
        let passing: std::collections::HashSet<u32> = segment.matching(Some(filter)).into_iter().collect();
        nodes.retain(|node| passing.contains(node));
    }
    let higher = segment.higher_is_better(&plan.using);
    let hits = segment.rescore(&plan.using, vector, &nodes)?;
    Ok(hits
        .into_iter()
        .filter(|hit| Some(hit.id) != leave_out)
        .filter(|hit| {
            plan.score_threshold.is_none_or(|threshold| {
                if higher {
                    hit.score >= threshold
                } else {
                    hit.score <= threshold
                }
            })
        })
        .collect())
}

/// Reciprocal rank fusion: each point scores the sum over lists of 1 / (k + its position).
fn fuse_ranks(lists: &[Vec<Hit>], k: f64) -> Vec<Hit> {
    let mut scores: HashMap<PointId, (f64, Hit, usize)> = HashMap::new();
    let mut order = 0;
    for list in lists {
        for (position, hit) in list.iter().enumerate() {
            let entry = scores.entry(hit.id).or_insert_with(|| {
                order += 1;
                (0.0, *hit, order)
            });
            entry.0 += 1.0 / (k + position as f64);
        }
    }
    sorted(scores)
}

/// Distribution-based score fusion: each list's scores put on a common scale (mean +- 3 standard
/// deviations to 0..1), then summed per point.
fn fuse_distributions(lists: &[Vec<Hit>]) -> Vec<Hit> {
    let mut scores: HashMap<PointId, (f64, Hit, usize)> = HashMap::new();
    let mut order = 0;
    for list in lists.iter().filter(|list| !list.is_empty()) {
        let values: Vec<f64> = list.iter().map(|hit| f64::from(hit.score)).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let variance = if values.len() > 1 {
            values.iter().map(|value| (value - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64
        } else {
            0.0
        };
        let (low, high) = (mean - 3.0 * variance.sqrt(), mean + 3.0 * variance.sqrt());
        for (hit, value) in list.iter().zip(values) {
            let normalised = if high > low { (value - low) / (high - low) } else { 0.5 };
            let entry = scores.entry(hit.id).or_insert_with(|| {
                order += 1;
                (0.0, *hit, order)
            });
            entry.0 += normalised;
        }
    }
    sorted(scores)
}

/// Points by fused score, best first; ties in the order they were first seen.
fn sorted(scores: HashMap<PointId, (f64, Hit, usize)>) -> Vec<Hit> {
    let mut fused: Vec<(f64, Hit, usize)> = scores.into_values().collect();
    fused.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)));
    fused
        .into_iter()
        .map(|(score, hit, _)| Hit {
            score: score as f32,
            ..hit
        })
        .collect()
}

fn scored_points(
    segment: &Segment,
    hits: &[Hit],
    body: &Map<String, Value>,
    payload_default: bool,
) -> Result<Vec<Value>, QdrantError> {
    let payload = WithPayload::parse(body.get("with_payload"), payload_default)?;
    let vector = WithVector::parse(body.get("with_vector"))?;
    Ok(hits
        .iter()
        .map(|hit| select::record(segment, hit.node, &payload, &vector, Some(hit.score)))
        .collect())
}

/// Runs a read of the collection on a blocking thread, under its read lock, and answers in Qdrant's envelope.
pub(crate) async fn searching(
    api: VectorApi,
    name: String,
    work: impl FnOnce(&Segment) -> Result<Value, QdrantError> + Send + 'static,
) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let collection = api.store.get(&name).ok_or_else(|| QdrantError::no_collection(&name))?;
    let result = blocking(move || {
        let stored = collection
            .read()
            .ok_or_else(|| QdrantError::no_collection(collection.name()))?;
        // Failures of reads an earlier request on this thread left are not this one's.
        let _ = stored.segment().check_reads();
        let answer = work(stored.segment())?;
        // Vectors kept on disk that could not be read are an error, not zeros in an answer.
        stored.segment().check_reads()?;
        Ok(answer)
    })
    .await?;
    Ok(ok(result, started))
}

fn one_query(body: &Map<String, Value>, segment: &Segment, budget: &mut Budget) -> Result<Value, QdrantError> {
    let plan = plan(body, "", 0, budget)?;
    let hits = run(&plan, segment)?;
    Ok(json!({"points": scored_points(segment, &hits, body, false)?}))
}

pub(crate) async fn query(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    let body = read(body).await?;
    searching(api, name, move |segment| one_query(&body, segment, &mut Budget::new())).await
}

fn searches(body: &Map<String, Value>) -> Result<Vec<Map<String, Value>>, QdrantError> {
    let items = body
        .get("searches")
        .and_then(Value::as_array)
        .ok_or_else(|| QdrantError::format("searches: a list of searches is required"))?;
    if items.len() > MAX_SEARCHES {
        return Err(QdrantError::format(format!("searches: more than {MAX_SEARCHES}")));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            item.as_object()
                .cloned()
                .ok_or_else(|| QdrantError::format(format!("searches[{index}]: an object")))
        })
        .collect()
}

pub(crate) async fn query_batch(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    batch(api, name, body, one_query).await
}

/// Answers one search of a batch, drawing on the request's budget.
type OneSearch = fn(&Map<String, Value>, &Segment, &mut Budget) -> Result<Value, QdrantError>;

/// Runs every search of `{"searches": [...]}` with `one`, answering their results in order.
async fn batch(api: VectorApi, name: String, body: Body, one: OneSearch) -> Result<Response, QdrantError> {
    let body = read(body).await?;
    let batch = searches(&body)?;
    searching(api, name, move |segment| {
        let mut budget = Budget::new();
        let results = batch.iter().map(|search| one(search, segment, &mut budget));
        results.collect::<Result<Vec<_>, _>>().map(Value::Array)
    })
    .await
}

/// A legacy search: `vector` (a list, or `{"name", "vector"}`), `limit` required.
fn one_search(body: &Map<String, Value>, segment: &Segment, budget: &mut Budget) -> Result<Value, QdrantError> {
    let (using, vector) = match body.get("vector") {
        Some(list @ Value::Array(_)) => (String::new(), select::dense(list, "vector")?),
        Some(Value::Object(named)) => {
            let name = named
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| QdrantError::format("vector.name: a vector name"))?;
            let list = named
                .get("vector")
                .ok_or_else(|| QdrantError::format("vector.vector: the vector"))?;
            (name.to_string(), select::dense(list, "vector.vector")?)
        }
        _ => return Err(QdrantError::format("missing field `vector`")),
    };
    if body.get("limit").is_none_or(Value::is_null) {
        return Err(QdrantError::format("missing field `limit`"));
    }
    let SearchParams {
        ef,
        exact,
        use_int8,
        rescore,
    } = search_params(body, "")?;
    let (limit, offset) = (number(body, "limit", "", 10)?, number(body, "offset", "", 0)?);
    budget.take(limit.saturating_add(offset), "")?;
    let plan = Plan {
        kind: Some(Kind::Nearest(vector)),
        using,
        prefetch: Vec::new(),
        filter: select::filter(body, "filter")?,
        ef,
        exact,
        use_int8,
        rescore,
        limit,
        offset,
        score_threshold: threshold(body, "")?,
    };
    let hits = run(&plan, segment)?;
    Ok(Value::Array(scored_points(segment, &hits, body, false)?))
}

pub(crate) async fn search(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    let body = read(body).await?;
    searching(api, name, move |segment| one_search(&body, segment, &mut Budget::new())).await
}

pub(crate) async fn search_batch(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    batch(api, name, body, one_search).await
}
