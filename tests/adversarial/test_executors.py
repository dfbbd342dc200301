"""``study run --workers / --executor / --address`` and the spec's ``resources`` against bad
values, a missing Ray and a cluster that is not there: one line, exit 2, nothing written, no hang."""

from __future__ import annotations

import sys
import time

import pytest
import yaml

from adversarial_helpers import snapshot  # noqa: E402  (see conftest.py)

FAST = {"compositions": ["real"], "sizes": [20], "seeds": [0], "classifier_preset": "tiny",
        "classifier": {"train": {"epochs": 1, "batch_size": 16}}}


@pytest.fixture
def spec(tmp_path, digits16):
    def write(**keys):
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump({"name": "adv", "real": str(digits16.path), **FAST, **keys}, sort_keys=False))
        return path

    return write


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_workers_below_one_are_refused_before_anything_is_written(spec, tmp_path, refused, workers):
    path = spec()
    before = snapshot(tmp_path)
    refused("study", "run", path, "-q", "--workers", workers, match=("--workers must be 1 or more", workers))
    refused("demo", "--quick", "-q", "--out", tmp_path / "demo", "--workers", workers, match="--workers must be")
    assert snapshot(tmp_path) == before


def test_ray_missing_says_how_to_install_it(spec, tmp_path, cli, refused, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: import ray raises ImportError
    path = spec()
    before = snapshot(tmp_path)
    refused("study", "run", path, "-q", "--executor", "ray", match='pip install "synthworth[ray]"')
    refused("generate", "--from", tmp_path / "no-run", "--count", "2", "--out", tmp_path / "gen", "--executor", "ray",
            match='pip install "synthworth[ray]"')
    assert snapshot(tmp_path) == before
    # The advice's alternative works: without --executor ray the local processes run the study.
    code, _, err = cli("study", "run", path, "-q")
    assert code == 0, err


@pytest.mark.parametrize("address, match", [("127.0.0.1:9", "cannot reach a Ray cluster at 127.0.0.1:9"),
                                            ("no-port-here", "is not HOST:PORT")])
def test_a_bad_address_is_one_line_at_once(spec, tmp_path, refused, address, match):
    pytest.importorskip("ray")
    path = spec()
    before = snapshot(tmp_path)
    started = time.perf_counter()
    refused("study", "run", path, "-q", "--executor", "ray", "--address", address, match=(match, "ray start --head"))
    assert time.perf_counter() - started < 60
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("resources, match", [({"gpus": -0.5}, "resources.gpus"), ({"cpus": 0}, "resources.cpus"),
                                              ({"gpu": 1}, "resources.gpu")])
def test_bad_resources_are_refused_naming_the_key(spec, tmp_path, refused, resources, match):
    path = spec(resources=resources)
    before = snapshot(tmp_path)
    refused("study", "run", path, "-q", match=match)
    assert snapshot(tmp_path) == before


def test_an_address_that_answers_but_is_not_ray_is_one_line_at_once(spec, tmp_path, refused):
    """A wrong port that does listen (here a web server) used to leave ray.init retrying for
    minutes, printing C++ warnings; it is refused before anything is written."""
    pytest.importorskip("ray")
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = spec()
        before = snapshot(tmp_path)
        started = time.perf_counter()
        refused("study", "run", path, "-q", "--executor", "ray", "--address", f"127.0.0.1:{server.server_port}",
                match=("not as a Ray cluster", "ray start --head"))
        assert time.perf_counter() - started < 30
        assert snapshot(tmp_path) == before
    finally:
        server.shutdown()
