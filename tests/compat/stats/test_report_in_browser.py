"""The drift report as a person sees it: rendered by headless Chromium (Debian's `chromium`), screenshotted, and
checked for the reference and current colours of its charts; and its size does not grow with the rows."""

import shutil
import struct
import subprocess
import zlib

import numpy as np
import pandas as pd
import pytest

WIDTH, HEIGHT = 1280, 1600


def decode_png(data: bytes):
    """Width, height and RGB(A) rows of an 8-bit PNG (enough of the format for Chromium's screenshots)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous, offset = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[offset], bytearray(raw[offset + 1 : offset + 1 + stride])
        offset += 1 + stride
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows


def colour_share(rows, channels, target, tolerance=12):
    hits = total = 0
    for row in rows[::4]:
        for x in range(0, len(row), channels * 4):
            total += 1
            if all(abs(row[x + c] - target[c]) <= tolerance for c in range(3)):
                hits += 1
    return hits / total


def blend(colour: str, opacity: float):
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return [round(opacity * c + (1 - opacity) * 255) for c in rgb]


def tables(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    make = lambda shift: pd.DataFrame({  # noqa: E731
        "amount": rng.lognormal(3 + shift, 0.5, rows),
        "score": rng.normal(shift, 1, rows),
        "segment": rng.choice(["retail", "business", "public"], rows, p=[0.6, 0.3, 0.1] if shift == 0 else [0.3, 0.4, 0.3]),
    })
    return make(0.0), make(0.4)


@pytest.fixture(scope="module")
def chromium():
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium package is needed for the report test (scripts/test.sh installs it)"
    return binary


def test_report_renders_with_both_distributions_in_chromium(tmp_path, run_loopline, chromium):
    reference, current = tables(20_000, 3)
    reference.to_parquet(tmp_path / "reference.parquet", index=False)
    current.to_parquet(tmp_path / "current.parquet", index=False)
    process = run_loopline("drift", "--reference", tmp_path / "reference.parquet", "--current",
                           tmp_path / "current.parquet", "--html", tmp_path / "report.html")
    assert process.returncode == 1, process.stderr
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files",
         f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", f"file://{tmp_path / 'report.html'}"],
        capture_output=True, timeout=120, check=True,
    )
    width, height, channels, rows = decode_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    # Histogram bars (55% opaque on white) and category bars (opaque) in both colours are on screen.
    assert colour_share(rows, channels, blend("#4a6fa5", 0.55)) > 0.0005
    assert colour_share(rows, channels, blend("#e07a28", 0.55)) > 0.0005
    assert colour_share(rows, channels, blend("#4a6fa5", 1.0)) > 0.0005
    assert colour_share(rows, channels, blend("#e07a28", 1.0)) > 0.0005
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          f"file://{tmp_path / 'report.html'}"], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "Dataset drift detected" in dom and dom.count("<svg") == 3


def test_report_size_does_not_grow_with_rows(tmp_path, run_loopline):
    sizes = []
    for rows in (2_000, 400_000):
        reference, current = tables(rows, 5)
        reference.to_parquet(tmp_path / f"reference-{rows}.parquet", index=False)
        current.to_parquet(tmp_path / f"current-{rows}.parquet", index=False)
        html = tmp_path / f"report-{rows}.html"
        process = run_loopline("drift", "--reference", tmp_path / f"reference-{rows}.parquet", "--current",
                               tmp_path / f"current-{rows}.parquet", "--html", html)
        assert process.returncode in (0, 1), process.stderr
        sizes.append(html.stat().st_size)
    assert max(sizes) < 64 * 1024, sizes
    # Only the bin count grows (Sturges, capped at 40 bins): 200 times the rows, well under twice the bytes.
    assert sizes[1] < 2 * sizes[0], sizes
