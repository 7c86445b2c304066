"""The HTML report: one self-contained page, one SVG per plot, escaped strings, and a real browser's
screenshot showing the plots drawn in the chaos and control colours."""

from __future__ import annotations

import copy
import math
import os
import shutil
import signal
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from proxy.observe.report import (
    CHAOS_COLOR,
    CONTROL_COLOR,
    example_report,
    latency_quantile,
    plot_count,
    render_report,
)


class Page(HTMLParser):
    """Tags, attributes and the text of inline styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.style = ""
        self.text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        self.text.append(data)


def parse(page: str) -> Page:
    p = Page()
    p.feed(page)
    p.close()
    return p


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return example_report()


def test_example_is_plain_json(example: dict[str, Any]) -> None:
    # What the admin API sends: orjson without numpy support, no NaN or infinities, and back.
    again = orjson.loads(orjson.dumps(example))
    assert again == example
    assert render_report(again) == render_report(example)
    assert set(example) >= {"experiment", "generated_at", "state", "chaos_percent", "control_percent", "cohorts",
                            "outputs", "drift_history", "srm", "kill_switch"}
    assert {e["kind"] for e in example["outputs"].values()} == {"numeric", "class", "probability"}
    assert all(len(e[c]["values"]) <= 2000 for e in example["outputs"].values() for c in ("chaos", "control"))


def test_page_is_self_contained_with_one_svg_per_plot(example: dict[str, Any]) -> None:
    page = render_report(example)
    p = parse(page)
    tags = [t for t, _ in p.tags]
    assert tags.count("svg") == plot_count(example) == 7
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    for _, attrs in p.tags:
        for name in ("src", "href", "xlink:href", "srcset", "action", "data"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (name, value)
    assert "http://" not in page and "https://" not in page
    assert "@import" not in p.style and "url(" not in p.style
    assert CHAOS_COLOR in page and CONTROL_COLOR in page
    text = " ".join(p.text)
    for title in ("Latency CDF per cohort", "score: prediction histogram", "label: predicted classes",
                  "probabilities: confidence histogram", "score: drift over time"):
        assert title in text
    assert "sample ratio" in text.lower() and "Kill switch" in text


def test_strings_from_responses_are_escaped(example: dict[str, Any]) -> None:
    data = copy.deepcopy(example)
    evil = '<script>alert("x")</script>'
    data["experiment"] = evil
    data["outputs"][evil] = data["outputs"].pop("label")
    data["outputs"][evil]["chaos"]["classes"][evil] = 5
    data["kill_switch"]["note"] = evil
    for h in data["drift_history"]:
        if h["output"] == "label":
            h["output"] = evil
    page = render_report(data)
    assert "<script" not in page
    p = parse(page)
    assert "script" not in [t for t, _ in p.tags]
    assert evil in " ".join(p.text)  # shown as text
    assert [t for t, _ in p.tags].count("svg") == plot_count(data)


def test_missing_and_odd_data_still_render() -> None:
    page = render_report({})
    assert [t for t, _ in parse(page).tags].count("svg") == plot_count({}) == 1
    odd = {
        "experiment": "odd", "cohorts": {"chaos": {"requests": 3, "latency_seconds": {"buckets": [
            [0.1, 1], [1.0, 3], [None, 3], ["nonsense", 2], "x"]}}, "control": None},
        "outputs": {
            "empty": {"kind": "numeric", "chaos": {"values": []}, "control": {}},
            "weird": {"kind": "numeric", "chaos": {"values": [1.0, float("nan"), "x", None, 1e308]},
                      "control": {"values": [1.0, 1.0, 1.0]}, "drift": None},
            "cls": {"kind": "class", "chaos": {"classes": {"a": 3, "b": float("inf")}}, "control": {"classes": {}}},
            "not-a-dict": 3,
        },
        "drift_history": [{"t": "garbage", "output": "empty"}, {"t": "2026-01-01T00:00:00", "output": "weird",
                                                                 "psi": float("nan"), "ks_p": 0.0}],
        "srm": "nope", "kill_switch": {"tripped": True, "guards": {"errors": {"e_value": float("inf")}}},
    }
    page = render_report(odd)
    tags = [t for t, _ in parse(page).tags]
    assert tags.count("svg") == plot_count(odd) == 7
    assert "nan" not in page.lower().replace("nanny", "")


def test_latency_quantile_like_histogram_quantile() -> None:
    buckets = [(0.01, 0.0), (0.1, 50.0), (1.0, 100.0), (math.inf, 100.0)]
    assert latency_quantile(buckets, 0.5) == pytest.approx(0.1)
    assert latency_quantile(buckets, 0.25) == pytest.approx(0.055)
    assert latency_quantile(buckets, 0.99) == pytest.approx(0.982)
    assert latency_quantile([(0.1, 0.0), (math.inf, 10.0)], 0.5) == pytest.approx(0.1)
    assert latency_quantile([], 0.5) is None and latency_quantile([(math.inf, 0.0)], 0.5) is None


# ---------------------------------------------------------------------------------- Chromium screenshot

def decode_png(data: bytes) -> np.ndarray:
    """RGB(A) pixels of an 8-bit, non-interlaced PNG (what Chromium writes), with the stdlib and numpy."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color not in (2, 6) or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {color}, interlace {interlace}")
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, width * bpp + 1)
    out = np.zeros((height, width * bpp), dtype=np.uint8)
    prev = np.zeros(width * bpp, dtype=np.int32)
    for y in range(height):
        f, line = int(raw[y, 0]), raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: a running sum per channel
            cur = (line.reshape(width, bpp).cumsum(axis=0) % 256).ravel().astype(np.int32)
        elif f == 2:  # Up
            cur = (line + prev) % 256
        elif f in (3, 4):  # Average, Paeth: sequential along the row
            src, up, res = line.tolist(), prev.tolist(), [0] * (width * bpp)
            for i in range(width * bpp):
                a = res[i - bpp] if i >= bpp else 0
                b = up[i]
                if f == 3:
                    pred = (a + b) >> 1
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                res[i] = (src[i] + pred) & 255
            cur = np.array(res, dtype=np.int32)
        else:
            raise ValueError(f"bad PNG filter {f}")
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)[:, :, :3]


def test_decode_png_on_a_known_image() -> None:
    # A 3x2 RGB image written with every filter type by hand.
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [40, 50, 60], [70, 80, 90]]],
                      dtype=np.uint8)
    rows = [b"\x00" + pixels[0].tobytes(), b"\x02" + ((pixels[1].astype(int) - pixels[0]) % 256).astype(
        np.uint8).tobytes()]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
    assert (decode_png(png) == pixels).all()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _start_screenshot(chromium: str, page: str, tmp: Path, size: str) -> tuple[subprocess.Popen[bytes], Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    html_path, png_path = tmp / "report.html", tmp / "shot.png"
    html_path.write_text(page, encoding="utf-8")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
           f"--user-data-dir={tmp / 'profile'}", f"--window-size={size}", f"--screenshot={png_path}",
           html_path.as_uri()]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    return proc, png_path


def _finish_screenshot(proc: subprocess.Popen[bytes], png_path: Path) -> np.ndarray:
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("chromium took more than 60 s")
    assert png_path.exists(), f"no screenshot (exit {proc.returncode}): {err.decode(errors='replace')[-2000:]}"
    return decode_png(png_path.read_bytes())


def _count(img: np.ndarray, color: str) -> tuple[int, int]:
    """Pixels of exactly ``color``, and the number of rows they occur in."""
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
    mask = (img == rgb).all(axis=2)
    return int(mask.sum()), int(mask.any(axis=1).sum())


def test_chromium_screenshot_shows_the_plots(example: dict[str, Any], tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("MLCHAOS_REQUIRE_CHROMIUM") == "1":
            pytest.fail("MLCHAOS_REQUIRE_CHROMIUM=1 but no chromium on PATH (bash scripts/install-chromium.sh)")
        pytest.skip("chromium is not installed (bash scripts/install-chromium.sh; Debian package chromium)")
    # Both pages at once: the example, and the same page without data, where only the cohort table's
    # swatches are in the cohort colours.
    full = _start_screenshot(chromium, render_report(example), tmp_path / "full", "1200,2400")
    empty = {"experiment": "empty", "state": "running", "cohorts": {}, "outputs": {}}
    bare = _start_screenshot(chromium, render_report(empty), tmp_path / "empty", "1200,900")
    img = _finish_screenshot(*full)
    assert img.shape == (2400, 1200, 3)
    white = float((img == 255).all(axis=2).mean())
    assert 0.3 < white < 0.97 and float(img.std()) > 10.0, "the page looks blank"
    chaos, chaos_rows = _count(img, CHAOS_COLOR)
    control, control_rows = _count(img, CONTROL_COLOR)
    # Drawn series (step lines, bars) in both colours, spread over several plots down the page.
    assert chaos >= 2000 and control >= 2000, (chaos, control)
    assert chaos_rows >= 200 and control_rows >= 200, (chaos_rows, control_rows)
    bare_img = _finish_screenshot(*bare)
    assert bare_img.shape == (900, 1200, 3)
    assert 0 < _count(bare_img, CHAOS_COLOR)[0] < 300 and 0 < _count(bare_img, CONTROL_COLOR)[0] < 300
