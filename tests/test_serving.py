"""The served model faces untrusted clients: ``ser serve`` on loopback, sent malformed payloads.

Every bad request gets an error row or a 4xx with one sentence; no file outside the allow-list is
opened (an audit hook in the server process records every ``open`` and socket ``connect``); the
server still answers a good clip afterwards as the model does in-process.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import SR, sine, small_registered_model, wait_for_ping
from ser_tasks.learn import tracking
from ser_tasks.serve.predict import PATH_REFUSED
from ser_tasks.serve.server import Refused, check_request
from ser_tasks.signal.audio import DecodeLimits

pytestmark = pytest.mark.slow

#: Runs ``ser`` in a process that records every file it opens and every address it connects to.
LAUNCHER = """
import os, sys
log = open(os.environ["SER_AUDIT_LOG"], "a", buffering=1)
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        log.write("open " + os.fsdecode(args[0]) + "\\n")
    elif event == "socket.connect":
        log.write("connect " + repr(args[1]) + "\\n")
sys.addaudithook(hook)
from ser_cli.app import main
sys.argv = ["ser", *sys.argv[1:]]
main()
"""


def wav_bytes(y: np.ndarray, sr: int = SR, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A small from-scratch model on tones (no encoder: this is about the server), registered as the
    champion and served by ``ser serve`` with one allowed root, the default limits but 8 rows and 4 s."""
    tmp = tmp_path_factory.mktemp("serving")
    small = small_registered_model(tmp)
    root, uri = small["root"], small["uri"]
    allowed = tmp / "allowed"
    allowed.mkdir()
    clip = root / "Actor_01" / sorted(p.name for p in (root / "Actor_01").iterdir())[0]
    (allowed / "clip.wav").write_bytes(clip.read_bytes())
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(clip.read_bytes())
    (allowed / "link.wav").symlink_to(outside / "secret.wav")
    audit = tmp / "audit.log"
    launcher = tmp / "launch.py"
    launcher.write_text(LAUNCHER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(launcher), "serve", "models:/tones@champion", "--port", str(port),
         "--mlflow-uri", uri, "--allow-path", str(allowed), "--max-rows", "8", "--max-seconds", "4",
         "--max-request-mib", "8",
         "--workers", "1"],  # in the launcher's process, where the audit hook sees every open
        env={**os.environ, "SER_AUDIT_LOG": str(audit)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)

    try:
        wait_for_ping(server, port, "ser serve")
        tracking.use(uri)
        local = mlflow.pyfunc.load_model("models:/tones@champion")
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "clip": clip, "allowed": allowed,
               "outside": outside, "audit": audit, "local": local, "tmp": tmp}
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


class _Recorder(BaseHTTPRequestHandler):
    """An HTTP server that counts the requests it gets: the server must never fetch a URL a client names."""

    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"RIFF")

    def log_message(self, *args):
        pass


def _payloads(s: dict, http_port: int) -> list[tuple[str, dict | bytes, str]]:
    """``(name, body, content type)`` of the malformed requests; a dict is sent as JSON."""
    y = sine(220.0, 1.0)
    good = wav_bytes(y)
    flac = wav_bytes(y, fmt="FLAC")
    liar = bytearray(good)
    struct.pack_into("<I", liar, 40, 2**31)  # data chunk size: 2^31 bytes
    struct.pack_into("<I", liar, 4, 2**31 + 36)
    nan = y.copy()
    nan[100] = np.nan

    def audio(*cells):
        return {"dataframe_split": {"columns": ["audio"], "data": [[c] for c in cells]}}

    def path(*cells):
        return {"dataframe_split": {"columns": ["path"], "data": [[c] for c in cells]}}

    secret = str(s["outside"] / "secret.wav")
    j = "application/json"
    return [
        ("random bytes", audio(b64(np.random.default_rng(0).bytes(4000))), j),
        ("truncated wav", audio(b64(good[:30])), j),
        ("truncated flac", audio(b64(flac[: len(flac) // 3])), j),
        ("wav header claiming 2^31 samples", audio(b64(bytes(liar))), j),
        ("zero-length audio", audio(""), j),
        ("one sample", audio(b64(wav_bytes(y[:1]))), j),
        ("six channels", audio(b64(wav_bytes(np.tile(y[:, None], (1, 6))))), j),
        ("NaN samples", audio(b64(wav_bytes(nan, subtype="FLOAT"))), j),
        ("10 s over the 4 s limit", audio(b64(wav_bytes(sine(220.0, 10.0)))), j),
        ("base64 that is not", audio("@@not base64@@"), j),
        ("audio as a number", audio(12345), j),
        ("audio as a list", audio([1, 2, 3]), j),
        ("path as an object", path({"a": 1}), j),
        ("speaker as a number", {"dataframe_split": {"columns": ["audio", "speaker"], "data": [[b64(good), 7]]}}, j),
        ("unknown column", {"dataframe_split": {"columns": ["audio", "file"], "data": [[b64(good), "x"]]}}, j),
        ("only an unknown column", {"dataframe_records": [{"file": "x.wav"}]}, j),
        ("empty frame", {"dataframe_split": {"columns": ["audio"], "data": []}}, j),
        ("too many rows", audio(*[b64(good)] * 9), j),
        ("/etc/passwd", path("/etc/passwd"), j),
        ("/etc/shadow", path("/etc/shadow"), j),
        ("a secret outside the root", path(secret), j),
        ("../ out of the root", path(str(s["allowed"]) + "/../outside/secret.wav"), j),
        ("a symlink out of the root", path(str(s["allowed"] / "link.wav")), j),
        ("relative ../", path("../../../../etc/passwd"), j),
        ("file:// URL", path("file:///etc/passwd"), j),
        ("http://127.0.0.1", path(f"http://127.0.0.1:{http_port}/clip.wav"), j),
        ("a missing file in the root", path(str(s["allowed"] / "gone.wav")), j),
        ("the root itself", path(str(s["allowed"])), j),
        ("not JSON", b"{not json", j),
        ("a JSON list", b"[1, 2]", j),
        ("JSON null", b"null", j),
        ("a NaN literal", b'{"dataframe_split": {"columns": ["audio"], "data": [[NaN]]}}', j),
        ("not UTF-8", b'{"dataframe_split": "\xff\xfe"}', j),
        ("empty body", b"", j),
        ("deep nesting", b"[" * 100_000 + b"]" * 100_000, j),
        ("CSV", b"audio\nabc\n", "text/csv"),
        ("no table", {"params": {"windows": True}}, j),
        ("two tables", {**audio(b64(good)), "dataframe_records": [{"audio": b64(good)}]}, j),
        ("ragged rows", {"dataframe_split": {"columns": ["audio", "speaker"], "data": [[b64(good)]]}}, j),
        ("unknown parameter", {**audio(b64(good)), "params": {"rm": "-rf"}}, j),
        ("window_seconds as text", {**audio(b64(good)), "params": {"window_seconds": "long"}}, j),
        ("negative hop", {**audio(b64(good)), "params": {"hop_seconds": -1.0}}, j),
        ("a 20 MB base64 string", audio("A" * 20_000_000), j),
    ]


def _one_sentence(text: str) -> str:
    doc = json.loads(text)
    message = doc["message"]
    assert set(doc) == {"error_code", "message"}, doc
    assert "\n" not in message and "Traceback" not in message and 'File "' not in message, message
    assert len(message) < 200, message
    return message


def test_malformed_payloads_get_error_rows_or_4xx_and_no_file_outside_the_root_is_opened(served):
    import httpx

    recorder = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    http_port = recorder.server_address[1]
    payloads = _payloads(served, http_port)
    assert len(payloads) >= 30
    answers = {}
    with httpx.Client(base_url=served["url"], timeout=120) as client:
        for name, body, ctype in payloads:
            content = json.dumps(body).encode() if isinstance(body, dict) else body
            r = client.post("/invocations", content=content, headers={"content-type": ctype})
            if r.status_code == 200:
                rows = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"{name}: {c} in the response"))
                rows = rows["predictions"]
                assert rows and all(row["error"] for row in rows), (name, rows)
                assert all(row["emotion"] == "" and row["p_angry"] is None for row in rows), (name, rows)
                answers[name] = rows[0]["error"]
            else:
                assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
                answers[name] = f"{r.status_code} {_one_sentence(r.text)}"
        # a body far over the limit is refused from its Content-Length, before it is sent
        with socket.create_connection(("127.0.0.1", served["port"])) as sock:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 400000000\r\n\r\n" + b'{"dataframe_split": {"data": [["' + b"A" * 1000)
            reply = sock.recv(65536).decode()
        assert reply.startswith("HTTP/1.1 413"), reply
        # and a chunked one once what was read passes it
        with socket.create_connection(("127.0.0.1", served["port"])) as sock:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"A" * 2**20
            try:
                for _ in range(12):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass  # the server answered and closed
            reply = sock.recv(65536).decode()
        assert reply.startswith("HTTP/1.1 413"), reply
        # the server still answers a good clip, as the model does in-process; and a path in the root
        good = served["clip"].read_bytes()
        r = client.post("/invocations", json={"dataframe_split": {
            "columns": ["audio", "path"], "data": [[b64(good), None], [None, str(served["allowed"] / "clip.wav")]]}})
    recorder.shutdown()
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    local = served["local"].predict(pd.DataFrame({"audio": [good]}))
    assert [row["error"] for row in rows] == ["", ""]
    assert [row["emotion"] for row in rows] == [local["emotion"][0]] * 2
    assert rows[0]["p_angry"] == pytest.approx(float(local["p_angry"][0]), abs=1e-6)

    refused = [f"row 0: {PATH_REFUSED}"]
    for name in ("/etc/passwd", "/etc/shadow", "a secret outside the root", "../ out of the root",
                 "a symlink out of the root", "relative ../", "file:// URL", "http://127.0.0.1",
                 "a missing file in the root", "the root itself"):
        assert [answers[name]] == refused, (name, answers[name])
    assert answers["10 s over the 4 s limit"] == "row 0: longer than the limit of 4 s"
    assert answers["six channels"] == "row 0: 6 channels, over the limit of 2"
    assert answers["too many rows"].startswith("413 9 rows, over the limit of 8")
    assert answers["unknown column"].startswith("400 unknown column 'file'")
    assert answers["a 20 MB base64 string"].startswith("413 ")
    assert answers["CSV"].startswith("415 ")
    # nothing outside the root was opened, and no URL a client named was fetched
    log = served["audit"].read_text().splitlines()
    opened = {line[5:] for line in log if line.startswith("open ")}
    assert str(served["allowed"] / "clip.wav") in opened  # the hook sees the server's opens
    for forbidden in ("/etc/passwd", "/etc/shadow", str(served["outside"] / "secret.wav")):
        assert not [p for p in opened if os.path.realpath(p) == forbidden], forbidden
    assert not [line for line in log if line.startswith("connect") and str(http_port) in line]
    assert _Recorder.hits == []


def test_the_guard_checks_the_shape_of_a_request_before_the_model():
    ok = {"dataframe_records": [{"audio": "AAAA", "speaker": None}], "params": {"per_window": True,
                                                                               "window_seconds": 2}}
    check_request(json.dumps(ok).encode(), 4)
    for body, status, message in [
        (b'{"dataframe_records": [{"path": 1}]}', 400, "row 0: the path column holds a number, not text or null"),
        (b'{"dataframe_records": [{}, {}, {}]}', 400, "the request needs a path or an audio column"),
        (b'{"dataframe_split": {"columns": ["audio", "audio"], "data": [[null, null]]}}', 400,
         "dataframe_split columns must be distinct strings"),
        (b'{"dataframe_records": [{"audio": null}], "params": {"windows": 1}}', 400,
         "parameter windows must be a boolean"),
        (b'{"dataframe_records": [{"audio": null}], "params": {"hop_seconds": true}}', 400,
         "parameter hop_seconds must be a number"),
        (b'{"dataframe_records": [{"audio": null}, {"audio": null}, {"audio": null}, {"audio": null}, {}]}', 413,
         "5 rows, over the limit of 4 per request"),
    ]:
        with pytest.raises(Refused) as err:
            check_request(body, 4)
        assert (err.value.status, err.value.message) == (status, message)


def test_decoding_stops_at_the_limits_from_the_header():
    from ser_tasks.errors import AudioError
    from ser_tasks.signal.audio import decode_audio

    long = wav_bytes(sine(220.0, 6.0))
    limits = DecodeLimits(max_seconds=2.0, max_bytes=len(long), max_channels=1)
    with pytest.raises(AudioError, match="clip: longer than the limit of 2 s"):
        decode_audio(long, SR, "clip", limits)
    with pytest.raises(AudioError, match="clip: 2 channels, over the limit of 1"):
        decode_audio(wav_bytes(np.zeros((SR, 2), np.float32)), SR, "clip", limits)
    with pytest.raises(AudioError, match=f"clip: {len(long) + 1} bytes, over the limit of {len(long)}"):
        decode_audio(long + b"\0", SR, "clip", limits)
    assert decode_audio(long, SR, "clip", DecodeLimits(max_seconds=6.0)).shape == (6 * SR,)


def test_concurrent_clients_all_get_the_answer_the_model_gives_in_process(served):
    """A short load (8 clients, 48 requests of 6 different clips) is answered without an error, each
    request with its own clip's answer (the figures under load are benchmarks/serve_load.py's)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    clips = sorted(Path(served["clip"]).parent.parent.rglob("*.wav"))[::4][:6]
    expected = served["local"].predict(pd.DataFrame({"audio": [p.read_bytes() for p in clips]}))

    def ask(i: int) -> tuple[int, str, float]:
        with httpx.Client(base_url=served["url"], timeout=120) as client:
            body = {"dataframe_split": {"columns": ["audio"], "data": [[b64(clips[i % 6].read_bytes())]]}}
            r = client.post("/invocations", json=body)
            assert r.status_code == 200, r.text
            row = r.json()["predictions"][0]
            assert row["error"] == "", row
            return i % 6, row["emotion"], row["p_angry"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(48)))
    assert len(answers) == 48
    for k, emotion, p_angry in answers:
        assert emotion == expected["emotion"][k]
        assert p_angry == pytest.approx(float(expected["p_angry"][k]), abs=1e-6)
