"""`loopline embed` and `loopline search` as a user runs them: a folder of Markdown, HTML, text and JSONL files
into a collection, read back with qdrant-client (payloads, headings, chunk counts), searched from the CLI and
with qdrant-client using the server's /v1/embeddings (the same model, so the same vectors), and a second run
after edits that embeds only what changed and removes chunks past a document's new end.
"""

import json
import subprocess

import openai
import pytest

from loopline_process import REPO_ROOT, binary

MARKDOWN = {
    "deploy.md": """# Deployments

## Rolling back

To roll back a deployment, move the champion alias to the previous model version. The rollout policy takes
over at once and sends all traffic to the version the alias names.

## Canary rollouts

A canary sends a small share of traffic to the new version. Each step waits for enough requests and checks
the error rate and latency against the guardrails before it moves on.
""",
    "drift.md": """# Monitoring

Drift reports compare the serving window with the reference data column by column. Numeric columns use the
Wasserstein distance and categorical ones the Jensen-Shannon distance.

An alert fires when a monitor's drift share passes its threshold, and it can start a retraining pipeline.
""",
}
HTML = """<html><head><title>x</title><style>body { color: red }</style></head><body>
<h1>Feature store</h1><p>Training sets are joined &quot;as of&quot; each entity&#39;s timestamp, so no future
value leaks into a row.</p></body></html>"""
RECORDS = [{"text": "Budgets limit what a gateway key may spend each month.", "team": "a"},
           {"text": "Rate limits count requests and tokens per minute for every key.", "team": "b"}]


def run(*args, check=True):
    done = subprocess.run([binary(), *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture()
def folder(tmp_path):
    docs = tmp_path / "kb"
    (docs / "guides").mkdir(parents=True)
    for name, text in MARKDOWN.items():
        (docs / "guides" / name).write_text(text)
    (docs / "store.html").write_text(HTML)
    (docs / "notes.txt").write_text("Plain notes. They have no headings at all.")
    (docs / "limits.jsonl").write_text("".join(json.dumps(record) + "\n" for record in RECORDS))
    (docs / ".hidden.md").write_text("# Secret\n\nNever read.")
    (docs / "image.png").write_bytes(b"\x89PNG")
    return docs


def test_a_folder_is_embedded_searched_and_updated(server, folder):
    from qdrant_client import QdrantClient, models

    url = ["--server", server.url]
    first = run("embed", "--collection", "kb", str(folder), *url, "--chunk-tokens", "24", "--overlap-tokens", "8")
    qdrant = QdrantClient(url=server.url, timeout=60)
    try:
        points, _ = qdrant.scroll("kb", limit=1000, with_payload=True)
        sources = {point.payload["source"].removeprefix(str(folder) + "/") for point in points}
        assert sources == {"guides/deploy.md", "guides/drift.md", "store.html", "notes.txt",
                           "limits.jsonl#L1", "limits.jsonl#L2"}
        total = len(points)
        assert f"{total} chunks from 6 documents; {total} embedded, 0 unchanged, 0 removed" in first.stdout
        for point in points:
            assert set(point.payload) >= {"source", "chunk_index", "heading", "text", "content_hash"}
        headings = {point.payload["heading"] for point in points}
        assert {"Deployments › Rolling back", "Deployments › Canary rollouts", "Monitoring",
                "Feature store", ""} <= headings
        html_text = " ".join(p.payload["text"] for p in points if p.payload["source"].endswith("store.html"))
        assert '"as of"' in html_text and "entity's" in html_text and "color" not in html_text
        canary = sorted((p for p in points if p.payload["heading"] == "Deployments › Canary rollouts"),
                        key=lambda p: p.payload["chunk_index"])
        assert len(canary) >= 2, "24-token chunks split the canary section"

        # The CLI and qdrant-client (with the server's embeddings of the same model) find the same chunk.
        hits = [json.loads(line) for line in
                run("search", "--collection", "kb", "how do I undo a release?", *url, "--json").stdout.splitlines()]
        assert hits[0]["payload"]["heading"] == "Deployments › Rolling back"
        openai_client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        question = openai_client.embeddings.create(model="all-MiniLM-L6-v2",
                                                   input="how do I undo a release?").data[0].embedding
        top = qdrant.query_points("kb", query=question, limit=1, with_payload=True).points[0]
        assert str(top.id) == hits[0]["id"]
        assert abs(top.score - hits[0]["score"]) < 1e-4
        printed = run("search", "--collection", "kb", "joined as of the timestamp", *url).stdout
        assert printed.startswith("1. ") and "store.html › Feature store (chunk " in printed.splitlines()[0]

        # Nothing changed: nothing embedded.
        again = run("embed", "--collection", "kb", str(folder), *url, "--chunk-tokens", "24", "--overlap-tokens", "8")
        assert f"{total} chunks from 6 documents; 0 embedded, {total} unchanged, 0 removed" in again.stdout

        # Another spelling of the same folder is the same documents.
        respelled = str(folder / "guides" / ".." / ".." / folder.name)
        again = run("embed", "--collection", "kb", respelled, *url, "--chunk-tokens", "24", "--overlap-tokens", "8")
        assert f"{total} chunks from 6 documents; 0 embedded, {total} unchanged, 0 removed" in again.stdout

        # One sentence edited, one document cut short: only their chunks change.
        deploy = folder / "guides" / "deploy.md"
        deploy.write_text(deploy.read_text().replace("at once", "within a second"))
        (folder / "guides" / "drift.md").write_text("# Monitoring\n\nDrift reports compare windows.\n")
        third = run("embed", "--collection", "kb", str(folder), *url, "--chunk-tokens", "24", "--overlap-tokens", "8")
        summary = third.stdout.strip().splitlines()[-1]
        embedded = int(summary.split("; ")[1].split(" embedded")[0])
        unchanged = int(summary.split(", ")[1].split(" unchanged")[0])
        removed = int(summary.split(", ")[-1].split(" removed")[0])
        # The untouched documents (store.html, notes.txt, two records) and deploy.md's canary section stay.
        assert embedded >= 1 and unchanged >= 6, summary
        assert removed >= 1, summary
        points, _ = qdrant.scroll("kb", limit=1000, with_payload=True)
        assert len(points) == int(summary.split(": ")[1].split(" chunks")[0])
        drift = [p for p in points if p.payload["source"].endswith("drift.md")]
        assert [p.payload["text"] for p in drift] == ["Drift reports compare windows."]
        edited = qdrant.count("kb", count_filter=models.Filter(must=[models.FieldCondition(
            key="text", match=models.MatchText(text="within a second"))])).count
        assert edited >= 1

        # A deleted file and a deleted JSONL file lose their chunks; a binary .txt and a Latin-1 one are
        # skipped with a warning; a UTF-16 one (with its byte order mark) is read.
        (folder / "store.html").unlink()
        (folder / "limits.jsonl").unlink()
        (folder / "dump.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
        (folder / "latin.txt").write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
        (folder / "wide.txt").write_bytes("Wide notes about canary rollbacks.".encode("utf-16"))
        before = len(points)
        fourth = run("embed", "--collection", "kb", str(folder), *url, "--chunk-tokens", "24", "--overlap-tokens", "8")
        assert "warning: skipped" in fourth.stderr and "dump.txt: binary" in fourth.stderr, fourth.stderr
        assert "latin.txt: not UTF-8 text" in fourth.stderr and "iconv" in fourth.stderr, fourth.stderr
        summary = fourth.stdout.strip().splitlines()[-1]
        points, _ = qdrant.scroll("kb", limit=1000, with_payload=True)
        sources = {point.payload["source"].removeprefix(str(folder) + "/") for point in points}
        assert sources == {"guides/deploy.md", "guides/drift.md", "notes.txt", "wide.txt"}, sources
        removed = int(summary.split(", ")[-1].split(" removed")[0])
        assert removed == before + 1 - len(points), summary
        wide = [p.payload["text"] for p in points if p.payload["source"].endswith("wide.txt")]
        assert wide == ["Wide notes about canary rollbacks."]
    finally:
        qdrant.delete_collection("kb")
        qdrant.close()


def test_mistakes_are_refused_with_a_message(server, folder, tmp_path):
    url = ["--server", server.url]
    picture = run("embed", "--collection", "kb2", str(folder / "image.png"), *url, check=False)
    assert picture.returncode == 2 and "image.png: not a kind loopline embed reads" in picture.stderr
    missing = run("embed", "--collection", "kb2", str(folder / "limits.jsonl"), *url, "--text-field", "body",
                  check=False)
    assert missing.returncode == 2 and "no string field 'body'" in missing.stderr
    budget = run("embed", "--collection", "kb2", str(folder), *url, "--chunk-tokens", "400", check=False)
    assert budget.returncode == 2 and "--chunk-tokens" in budget.stderr
    from qdrant_client import QdrantClient, models
    qdrant = QdrantClient(url=server.url, timeout=60)
    qdrant.create_collection("small", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    try:
        wrong = run("embed", "--collection", "small", str(folder), *url, check=False)
        assert wrong.returncode == 2 and "holds vectors of size 8, but the model gives 384" in wrong.stderr
    finally:
        qdrant.delete_collection("small")
        qdrant.close()
    unknown = run("search", "--collection", "nowhere", "question", *url, check=False)
    assert unknown.returncode == 2 and "nowhere" in unknown.stderr
