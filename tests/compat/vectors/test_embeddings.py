"""The local embedding model (`--embeddings-model all-MiniLM-L6-v2`) through the real openai SDK: vectors equal
to sentence-transformers' (embedding_reference.json, made by make_embedding_reference.py with the real
package), requests batched together without mixing their rows, OpenAI's shapes and errors, and the vectors
searched through qdrant-client.
"""

import base64
import json
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openai
import pytest

MODEL = "all-MiniLM-L6-v2"
REFERENCE = json.loads((Path(__file__).parent / "embedding_reference.json").read_text())


@pytest.fixture()
def client(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
    yield client
    client.close()


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_vectors_equal_sentence_transformers(client):
    answer = client.embeddings.create(model=MODEL, input=REFERENCE["texts"])
    assert answer.model == MODEL
    assert [item.index for item in answer.data] == list(range(len(REFERENCE["texts"])))
    for text, item, expected in zip(REFERENCE["texts"], answer.data, REFERENCE["embeddings"]):
        assert len(item.embedding) == 384
        assert cosine(item.embedding, expected) > 1 - 1e-5, text
        assert np.abs(np.asarray(item.embedding) - np.asarray(expected)).max() < 1e-5, text
    expected_tokens = sum(len(ids) for ids in REFERENCE["token_ids"])
    assert answer.usage.prompt_tokens == expected_tokens
    assert answer.usage.total_tokens == expected_tokens


def test_concurrent_requests_are_batched_without_mixing_rows(client):
    texts = [f"request number {i} asks about {topic}" for i, topic in
             enumerate(["drift", "canary rollouts", "feature stores", "vector search"] * 8)]
    alone = {text: client.embeddings.create(model=MODEL, input=text).data[0].embedding for text in texts[:4]}
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda text: client.embeddings.create(model=MODEL, input=[text, "a shared suffix"]),
                                texts))
    suffix = answers[0].data[1].embedding
    for text, answer in zip(texts, answers):
        assert len(answer.data) == 2
        assert cosine(answer.data[1].embedding, suffix) > 1 - 1e-6
        if text in alone:
            assert cosine(answer.data[0].embedding, alone[text]) > 1 - 1e-6, text
    distinct = {tuple(np.round(answer.data[0].embedding, 4)) for answer in answers}
    assert len(distinct) == len(set(texts))


def test_base64_vectors_decode_to_the_floats(client):
    floats = client.embeddings.create(model=MODEL, input="base64 please").data[0].embedding
    # The SDK decodes base64 itself when it asked for it; ask through the raw response to see the encoding.
    raw = client.embeddings.with_raw_response.create(model=MODEL, input="base64 please", encoding_format="base64")
    encoded = json.loads(raw.text)["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(encoded))
    assert np.allclose(decoded, floats, atol=1e-7)


@pytest.mark.parametrize("arguments, says, param", [
    ({"input": [[101, 2023, 102]]}, "token ids", "input"),
    ({"input": "x", "dimensions": 12}, "384-dimensional", "dimensions"),
    ({"input": []}, "input", "input"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format", "encoding_format"),
])
def test_mistakes_are_400s_naming_the_field(client, arguments, says, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=MODEL, **arguments)
    assert says in str(refused.value)
    # The field is named where the SDK reads it too.
    assert refused.value.param == param, refused.value.body


def test_the_model_is_listed_and_answers_only_embeddings(client):
    assert MODEL in [model.id for model in client.models.list()]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "sentence-embedding model" in str(refused.value)


def test_embedded_texts_are_found_through_qdrant_client(server, client):
    from qdrant_client import QdrantClient, models

    documents = [
        "To roll back a deployment, move the champion alias to the previous model version.",
        "Drift reports compare the serving window with the training data column by column.",
        "The feature store joins features as of each entity's timestamp to avoid leakage.",
        "Canary rollouts send a small share of traffic to the new model and watch its errors.",
    ]
    vectors = [item.embedding for item in client.embeddings.create(model=MODEL, input=documents).data]
    qdrant = QdrantClient(url=server.url, timeout=60)
    qdrant.create_collection("embedded_docs", vectors_config=models.VectorParams(size=384,
                                                                                 distance=models.Distance.COSINE))
    qdrant.upsert("embedded_docs", points=[models.PointStruct(id=i, vector=v, payload={"text": d})
                                           for i, (v, d) in enumerate(zip(vectors, documents))], wait=True)
    for question, expected in [("how do I undo a bad release?", 0),
                               ("which columns changed distribution since training?", 1),
                               ("joining features without leaking future values", 2)]:
        query = client.embeddings.create(model=MODEL, input=question).data[0].embedding
        hits = qdrant.query_points("embedded_docs", query=query, limit=1).points
        assert hits[0].id == expected, (question, hits)
    qdrant.delete_collection("embedded_docs")
    qdrant.close()


def test_a_request_larger_than_a_batch_keeps_its_order(client):
    texts = [f"sentence {i} about {'drift' if i % 2 else 'serving'} number {i * 7}" for i in range(150)]
    answer = client.embeddings.create(model=MODEL, input=texts)
    assert [item.index for item in answer.data] == list(range(150))
    for i in (0, 63, 64, 65, 127, 128, 149):
        alone = client.embeddings.create(model=MODEL, input=texts[i]).data[0].embedding
        assert cosine(answer.data[i].embedding, alone) > 1 - 1e-6, i
