"""The benchmark harness reads wrk's own numbers: a real wrk run against a tiny local server."""
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.harness import Row, format_rows, run_wrk
from tests.services import require


class Tiny(BaseHTTPRequestHandler):
    """200 for / and /slow (which answers 20 ms later), 404 for anything else; no logging."""

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/slow":
            time.sleep(0.02)
        status = 200 if self.path in ("/", "/slow") else 404
        try:
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except (BrokenPipeError, ConnectionResetError):
            pass  # wrk closes its connections at the end of its run, answers in flight or not

    def log_message(self, *args):
        pass


@pytest.fixture
def tiny_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Tiny)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_it_reads_requests_latency_percentiles_and_error_statuses_from_a_real_wrk_run(tiny_server, tmp_path):
    require("wrk", shutil.which("wrk") is not None)
    # Every other request is a 404; the scenario's own done() still runs after the harness's.
    script = """
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then return wrk.format("GET", "/missing") end
  return wrk.format("GET", "/")
end
done = function(summary, latency, requests) io.write("scenario done\\n") end
"""
    result = run_wrk(tiny_server + "/", connections=2, seconds=1, script=script, headers={"X-Quote": 'a "b"'}, work_dir=tmp_path)
    assert result.requests > 10 and result.requests_per_s > 10
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms <= result.max_ms
    assert result.errors == 0
    assert abs(result.non_2xx - result.requests / 2) <= 2  # each connection alternates; wrk counts statuses >= 400
    assert "scenario done" in result.output
    assert "Latency Distribution" in result.output  # --latency: wrk's own table is kept for the log


def test_it_keeps_to_the_asked_rate_when_each_answer_takes_a_while(tiny_server, tmp_path):
    require("wrk", shutil.which("wrk") is not None)
    # 2 connections at 50 a second: a fixed pause of 40 ms before each request would add the 20 ms of
    # each answer to it (about 33 a second); the schedule keeps to 50 and never runs ahead of it.
    result = run_wrk(tiny_server + "/slow", connections=2, seconds=2, rate=50, work_dir=tmp_path)
    assert result.errors == 0 and result.non_2xx == 0
    assert 45 <= result.requests_per_s <= 52


def test_it_writes_one_markdown_row_per_result_with_missed_targets_in_bold():
    table = format_rows([
        Row("approvals", "512 req/s", "plain DRF status update: 880 req/s", "0.58x", ">= 0.6x", False, "p99 231 ms | profile"),
        Row("history", "p99 4 ms", "", "", "", None),
    ])
    lines = table.splitlines()
    assert lines[0] == "| scenario | ours | baseline | ratio | target | met | note |"
    assert lines[2] == "| approvals | 512 req/s | plain DRF status update: 880 req/s | 0.58x | >= 0.6x | **no** | p99 231 ms \\| profile |"
    assert lines[3] == "| history | p99 4 ms |  |  |  |  |  |"
