"""The same qdrant-client script against Loopline and against qdrant-client's local mode: collections, upserts
(list and batch forms), payload indexes, queries with filters, by point id and hybrid with RRF fusion, scroll,
count, retrieve, payload operations and deletes must give the same answers; an acknowledged upsert survives
kill -9 of the server.
"""

import signal
import warnings

import numpy as np
import pytest
from qdrant_client import models

from conftest import start

DIM = 16
N = 600
LANGS = ["en", "de", "fr", "es"]


def make_points(seed=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, DIM))
    points = []
    for i in range(N):
        vector = centres[i % 6] + 0.3 * rng.normal(size=DIM)
        payload = {"lang": LANGS[i % 4], "year": 2000 + i % 25, "score": float(i % 97) / 10,
                   "tags": [f"t{i % 5}", f"t{i % 7}"], "title": f"document number {i} about topic {i % 9}"}
        if i % 11 == 0:
            payload["nested"] = {"level": i % 3, "items": [{"k": i % 4, "v": "x"}, {"k": 9, "v": "y"}]}
        if i % 13 == 0:
            payload["maybe"] = None
        point_id = i if i % 10 else f"00000000-0000-4000-8000-{i:012d}"
        points.append(models.PointStruct(id=point_id, vector=vector.tolist(), payload=payload))
    return points


def both(clients, call):
    remote, local = clients
    return call(remote), call(local)


def same_hits(a, b, score_places=4):
    assert [p.id for p in a] == [p.id for p in b], (a[:3], b[:3])
    for x, y in zip(a, b):
        assert x.score == pytest.approx(y.score, abs=10 ** -score_places)
        assert x.payload == y.payload


FILTERS = [
    None,
    models.Filter(must=[models.FieldCondition(key="lang", match=models.MatchValue(value="en"))]),
    models.Filter(must=[models.FieldCondition(key="year", range=models.Range(gte=2010, lt=2015))],
                  must_not=[models.FieldCondition(key="lang", match=models.MatchAny(any=["de", "fr"]))]),
    models.Filter(should=[models.FieldCondition(key="tags", match=models.MatchValue(value="t3")),
                          models.FieldCondition(key="score", range=models.Range(gt=9.0))]),
    models.Filter(must=[models.FieldCondition(key="title", match=models.MatchText(text="topic 4"))]),
    models.Filter(must=[models.NestedCondition(nested=models.Nested(key="nested.items", filter=models.Filter(
        must=[models.FieldCondition(key="k", match=models.MatchValue(value=2)),
              models.FieldCondition(key="v", match=models.MatchValue(value="x"))])))]),
    models.Filter(must=[models.IsNullCondition(is_null=models.PayloadField(key="maybe"))]),
    models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="nested"))]),
    models.Filter(must=[models.HasIdCondition(has_id=[1, 2, 3, 40, "00000000-0000-4000-8000-000000000020"])]),
    models.Filter(must=[models.FieldCondition(key="tags", values_count=models.ValuesCount(gte=2))],
                  min_should=models.MinShould(conditions=[
                      models.FieldCondition(key="lang", match=models.MatchValue(value="es")),
                      models.FieldCondition(key="year", range=models.Range(lte=2005)),
                      models.FieldCondition(key="tags", match=models.MatchExcept(**{"except": ["t0"]}))], min_count=2)),
]


def create(client, name="docs", **extra):
    client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE), **extra)


def test_collection_upsert_query_scroll_count_retrieve_agree_with_local_mode(clients):
    remote, local = clients
    points = make_points()
    for client in clients:
        create(client)
        assert client.collection_exists("docs")
        client.upsert("docs", points=points[:300], wait=True)
        # The batch form for the rest.
        rest = points[300:]
        client.upsert("docs", points=models.Batch(ids=[p.id for p in rest], vectors=[p.vector for p in rest],
                                                  payloads=[p.payload for p in rest]), wait=True)
    remote.create_payload_index("docs", "lang", field_schema=models.PayloadSchemaType.KEYWORD)
    remote.create_payload_index("docs", "year", field_schema=models.PayloadSchemaType.INTEGER)
    info = remote.get_collection("docs")
    assert info.points_count == N
    assert info.config.params.vectors.size == DIM
    assert set(info.payload_schema) == {"lang", "year"}
    assert [c.name for c in remote.get_collections().collections] == ["docs"]

    rng = np.random.default_rng(11)
    for query_filter in FILTERS:
        for _ in range(3):
            query = rng.normal(size=DIM).tolist()
            a, b = both(clients, lambda c: c.query_points("docs", query=query, query_filter=query_filter, limit=7,
                                                            with_payload=True).points)
            same_hits(a, b)
        a, b = both(clients, lambda c: c.count("docs", count_filter=query_filter, exact=True).count)
        assert a == b
        # Scroll every page.
        pages = []
        for client in clients:
            seen, offset = [], None
            while True:
                got, offset = client.scroll("docs", scroll_filter=query_filter, limit=64, offset=offset)
                seen.extend(p.id for p in got)
                if offset is None:
                    break
            pages.append(seen)
        assert pages[0] == pages[1]
    # By point id, with offset and threshold.
    a, b = both(clients, lambda c: c.query_points("docs", query=17, limit=5, offset=2, with_payload=True).points)
    same_hits(a, b)
    a, b = both(clients, lambda c: c.query_points("docs", query=points[5].vector, score_threshold=0.8, limit=50).points)
    same_hits(a, b)
    # Hybrid: two prefetches fused by reciprocal rank.
    prefetch = [models.Prefetch(query=points[1].vector, limit=20),
                models.Prefetch(query=points[2].vector, limit=20,
                                filter=models.Filter(must=[models.FieldCondition(key="lang", match=models.MatchValue(value="fr"))]))]
    a, b = both(clients, lambda c: c.query_points("docs", prefetch=prefetch, query=models.FusionQuery(fusion=models.Fusion.RRF),
                                                  limit=10).points)
    assert [p.id for p in a] == [p.id for p in b]
    assert [round(p.score, 5) for p in a] == [round(p.score, 5) for p in b]
    # The outer filter holds for the fused points too.
    english = models.Filter(must=[models.FieldCondition(key="lang", match=models.MatchValue(value="en"))])
    a, b = both(clients, lambda c: c.query_points("docs", prefetch=prefetch, query=models.FusionQuery(fusion=models.Fusion.RRF),
                                                  query_filter=english, limit=10, with_payload=True).points)
    assert [p.id for p in a] == [p.id for p in b]
    assert all(p.payload["lang"] == "en" for p in a)
    # Retrieve with vectors: cosine vectors come back normalised, as Qdrant stores them.
    ids = [3, 40, "00000000-0000-4000-8000-000000000020", 99999]
    a, b = both(clients, lambda c: c.retrieve("docs", ids=ids, with_vectors=True))
    assert [p.id for p in a] == [p.id for p in b]
    for x, y in zip(a, b):
        assert np.allclose(x.vector, y.vector, atol=1e-6)
        assert x.payload == y.payload
    batch = [models.QueryRequest(query=points[i].vector, limit=3, with_payload=False) for i in (7, 8)]
    a, b = both(clients, lambda c: c.query_batch_points("docs", requests=batch))
    for x, y in zip(a, b):
        assert [p.id for p in x.points] == [p.id for p in y.points]


def test_payload_operations_and_deletes_agree_with_local_mode(clients):
    points = make_points(seed=5)[:120]
    for client in clients:
        create(client)
        client.upsert("docs", points=points, wait=True)
        client.set_payload("docs", payload={"reviewed": True, "lang": "xx"}, points=[1, 2, 3])
        client.set_payload("docs", payload={"deep": 1}, points=models.Filter(
            must=[models.FieldCondition(key="year", range=models.Range(lt=2003))]))
        client.overwrite_payload("docs", payload={"only": "this"}, points=[4])
        client.delete_payload("docs", keys=["title", "tags"], points=[5, 6])
        client.clear_payload("docs", points_selector=models.PointIdsList(points=[7]))
        client.delete("docs", points_selector=models.FilterSelector(filter=models.Filter(
            must=[models.FieldCondition(key="lang", match=models.MatchValue(value="de"))])))
        client.delete("docs", points_selector=models.PointIdsList(points=[8, 9, 12345]))
    a, b = both(clients, lambda c: c.scroll("docs", limit=500, with_payload=True)[0])
    assert [(p.id, p.payload) for p in a] == [(p.id, p.payload) for p in b]


def test_named_vectors_and_errors(clients):
    remote, local = clients
    vectors = {"text": models.VectorParams(size=4, distance=models.Distance.DOT),
               "image": models.VectorParams(size=2, distance=models.Distance.EUCLID)}
    for client in clients:
        client.create_collection("multi", vectors_config=vectors)
        client.upsert("multi", points=[
            models.PointStruct(id=1, vector={"text": [1, 0, 0, 0], "image": [0, 0]}, payload={"k": 1}),
            models.PointStruct(id=2, vector={"text": [0, 2, 0, 0], "image": [3, 4]}, payload={"k": 2}),
        ])
    a, b = both(clients, lambda c: c.query_points("multi", query=[0.5, 0.5], using="image", limit=2).points)
    same_hits(a, b)
    a, b = both(clients, lambda c: c.query_points("multi", query=[0, 1, 0, 0], using="text", limit=2, with_vectors=True).points)
    same_hits(a, b)
    from qdrant_client.http.exceptions import UnexpectedResponse
    with pytest.raises(UnexpectedResponse) as error:
        remote.upsert("multi", points=[models.PointStruct(id=3, vector={"text": [1, 2]})])
    assert error.value.status_code == 400
    assert "dimension" in error.value.content.decode()
    with pytest.raises(UnexpectedResponse) as error:
        remote.query_points("nope", query=[1, 2])
    assert error.value.status_code == 404
    # What the client itself would refuse to send, sent raw: an error in Qdrant's shape naming the field.
    import requests
    answer = requests.post(f"{remote.init_options['url']}/collections/multi/points/query", timeout=10,
                           json={"query": [1, 2], "using": "image",
                                 "filter": {"must": [{"key": "k", "range": {"gte": "not a date"}}]}})
    assert answer.status_code == 400
    assert "filter.must[0].range.gte" in answer.json()["status"]["error"]
    answer = requests.put(f"{remote.init_options['url']}/collections/multi/points", timeout=10,
                          json={"points": [{"id": "12-not-a-uuid", "vector": {"text": [1, 2, 3, 4]}}]})
    assert answer.status_code == 400
    assert "points[0].id" in answer.json()["status"]["error"]


def test_the_graph_finds_what_exact_search_finds(clients):
    remote, _ = clients
    points = make_points(seed=9)
    # A tiny full-scan threshold makes every search walk the graph.
    create(remote, "graph", hnsw_config=models.HnswConfigDiff(m=16, ef_construct=100, full_scan_threshold=1))
    remote.upsert("graph", points=points, wait=True)
    rng = np.random.default_rng(2)
    found = 0
    for _ in range(30):
        query = rng.normal(size=DIM).tolist()
        approximate = {p.id for p in remote.query_points("graph", query=query, limit=10).points}
        exact = {p.id for p in remote.query_points("graph", query=query, limit=10,
                                                    search_params=models.SearchParams(exact=True)).points}
        found += len(approximate & exact)
    assert found / 300 >= 0.95


def test_no_version_warning_and_an_acknowledged_upsert_survives_kill_9(server):
    from qdrant_client import QdrantClient

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        QdrantClient(url=server.url).get_collections()
    crash = start(server.data_dir + "-crash")
    # (The version check is the block above; these clients skip it so a killed server is not asked.)
    client = QdrantClient(url=crash.url, timeout=60, check_compatibility=False)
    create(client, "durable")
    points = make_points(seed=4)[:200]
    for start_at in range(0, 200, 50):
        client.upsert("durable", points=points[start_at:start_at + 50], wait=True)
    crash.process.send_signal(signal.SIGKILL)
    crash.process.wait()
    again = start(server.data_dir + "-crash")
    try:
        client = QdrantClient(url=again.url, timeout=60, check_compatibility=False)
        assert client.count("durable", exact=True).count == 200
        got = client.retrieve("durable", ids=[points[0].id, points[199].id])
        assert [p.payload for p in got] == [points[0].payload, points[199].payload]
    finally:
        again.stop()


def test_nested_paths_agree_with_local_mode(clients):
    payload = {"a": {"b": 1, "c": 2}, "arr": [{"v": 1, "w": 2}, {"v": 3}], "x.y": 5, "k": 0, "grid": [[1, 2], [3, 4]]}
    for client in clients:
        client.create_collection("paths", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
        client.upsert("paths", points=[models.PointStruct(id=1, vector=[1, 0], payload=payload)])
    for selector in (models.PayloadSelectorInclude(include=["a.b", "arr[].v", "k"]),
                     models.PayloadSelectorExclude(exclude=["a.b", "arr[].w"])):
        a, b = both(clients, lambda c: c.retrieve("paths", ids=[1], with_payload=selector)[0].payload)
        assert a == b
    for key in ["grid[]", "grid[0]", "arr[].v", "a.b"]:
        condition = models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=1))])
        a, b = both(clients, lambda c: c.count("paths", count_filter=condition).count)
        assert a == b, key
    for client in clients:
        client.delete_payload("paths", keys=["a.c", "arr[].v"], points=[1])
    a, b = both(clients, lambda c: c.retrieve("paths", ids=[1])[0].payload)
    assert a == b


def test_vectors_on_disk_with_int8_agree_with_local_mode_and_are_read_from_their_file_after_a_restart(server):
    """`on_disk=True` keeps the originals in a file after a checkpoint (taken at shutdown): answers before and
    after a restart agree with local mode, and with Qdrant's quantization search parameters."""
    from pathlib import Path

    from qdrant_client import QdrantClient

    data_dir = server.data_dir + "-on-disk"
    first = start(data_dir)
    local = QdrantClient(":memory:")
    config = dict(vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE, on_disk=True),
                  quantization_config=models.ScalarQuantization(
                      scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)),
                  hnsw_config=models.HnswConfigDiff(full_scan_threshold=1))
    points = make_points(seed=5)
    queries = [p.vector for p in make_points(seed=6)[:20]]

    def answers(client):
        exact = [client.query_points("disk", query=q, limit=10, with_vectors=True,
                                     search_params=models.SearchParams(exact=True)).points for q in queries]
        graph = [client.query_points("disk", query=q, limit=10, search_params=models.SearchParams(
            hnsw_ef=128, quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0))).points
            for q in queries]
        unrescored = client.query_points("disk", query=queries[0], limit=5, search_params=models.SearchParams(
            quantization=models.QuantizationSearchParams(rescore=False))).points
        return exact, graph, unrescored

    try:
        client = QdrantClient(url=first.url, timeout=60, check_compatibility=False)
        client.create_collection("disk", **config)
        local.create_collection("disk", **config)
        for at in range(0, N, 200):
            client.upsert("disk", points=points[at:at + 200], wait=True)
        local.upsert("disk", points=points)
        info = client.get_collection("disk")
        assert info.config.params.vectors.on_disk is True
        before = answers(client)
        # Local mode always searches exactly (and warns about search parameters).
        expected = [local.query_points("disk", query=q, limit=10, with_vectors=True).points for q in queries]
        for got, want in zip(before[0], expected):
            same_hits(got, want)
            for x, y in zip(got, want):
                assert x.vector == pytest.approx(y.vector, abs=1e-5)
        found = sum(len({p.id for p in g} & {p.id for p in e}) for g, e in zip(before[1], before[0]))
        assert found / 200 >= 0.95
        # Without rescoring the int8 scores come back: close to the real ones, not equal.
        assert [p.id for p in before[2]][:1] == [p.id for p in before[0][0]][:1]
        assert before[2][0].score == pytest.approx(before[0][0][0].score, abs=0.05)
    finally:
        assert first.stop() == 0, first.log_text()
    files = list(Path(data_dir, "vectors").glob("*/vectors-*.f32"))
    assert len(files) == 1 and files[0].stat().st_size == N * DIM * 4, files

    again = start(data_dir)
    try:
        client = QdrantClient(url=again.url, timeout=60, check_compatibility=False)
        after = answers(client)
        for got, want in zip(after[0], before[0]):
            same_hits(got, want, score_places=6)
            assert [p.vector for p in got] == [p.vector for p in want]
        assert [[p.id for p in hits] for hits in after[1]] == [[p.id for p in hits] for hits in before[1]]
    finally:
        assert again.stop() == 0, again.log_text()
        local.close()
