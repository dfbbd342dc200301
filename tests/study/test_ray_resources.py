"""What a study asks of Ray: every cell's task carries the spec's ``resources`` (a share of a GPU
included), a local cluster gets the machine's cores (not one CPU per GPU, which would hold back
cells sharing a GPU), and a request a local cluster can never meet is refused in one line
instead of waiting forever. Checked with a stand-in for Ray (``fake_ray``): no cluster, no GPU."""

from __future__ import annotations

import pytest

from synthworth.errors import ConfigError
from synthworth.study import run_study

KEYS = {"compositions": ["real"], "seeds": [0, 1]}  # two cells


def test_every_cell_asks_ray_for_the_spec_resources(write_spec, fake_ray):
    ray = fake_ray({"CPU": 4.0, "GPU": 1.0})
    spec = write_spec(resources={"gpus": 0.25, "cpus": 2, "max_retries": 1}, **KEYS)
    report = run_study(spec, progress=False, executor="ray", workers=None)
    assert len(report.trained) == 2 and not report.failed
    assert [(r["num_gpus"], r["num_cpus"], r["max_retries"]) for r in ray.requests] == [(0.25, 2.0, 1)]
    # workers=None (no --workers) reaches the session: a local cluster then gets every core.
    assert ray.sessions == [(None, None)]


def test_a_local_ray_cluster_gets_every_core_on_a_gpu_machine(monkeypatch):
    """A one-GPU machine used to start its local cluster with one CPU (one worker per GPU), so
    cells asking for 0.25 GPU and 1 CPU ran one at a time, and cells asking for 2 CPUs never."""
    import torch

    import synthworth.procs as procs

    started = {}

    class Ray:
        def is_initialized(self):
            return False

        def init(self, **kwargs):
            started.update(kwargs)

        def shutdown(self):
            started["shut"] = True

    monkeypatch.setattr(procs, "import_ray", lambda: Ray())
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(procs, "cpu_cores", lambda: 16)
    assert procs.machine_workers() == 1  # local worker processes: still one per GPU
    with procs.ray_session(None, None):
        pass
    assert started["num_cpus"] == 16 and started["shut"]
    started.clear()
    with procs.ray_session(None, 3):  # --workers 3: the cluster's CPUs
        pass
    assert started["num_cpus"] == 3


@pytest.mark.parametrize("resources, cluster, match", [
    ({"gpus": 0.5}, {"CPU": 2.0}, ("resources.gpus=0.5", "local Ray cluster has 0 GPU(s)", "resources.gpus=0")),
    ({"gpus": 2}, {"CPU": 2.0, "GPU": 1.0}, ("resources.gpus=2", "has 1 GPU(s)", "resources.gpus=0")),
    ({"cpus": 4}, {"CPU": 2.0}, ("resources.cpus=4", "2 CPU(s)", "at most 2")),
])
def test_a_request_a_local_cluster_cannot_meet_is_refused(write_spec, fake_ray, resources, cluster, match):
    ray = fake_ray(cluster)
    spec = write_spec(resources=resources, **KEYS)
    with pytest.raises(ConfigError) as caught:
        run_study(spec, progress=False, executor="ray")
    message = str(caught.value)
    assert all(m in message for m in match) and "\n" not in message, message
    assert ray.requests == []  # nothing was submitted to wait forever
    # The advice works: with the request lowered the same study trains.
    fix = {"gpus": 0} if "gpus" in resources else {"cpus": 2}
    report = run_study(spec, progress=False, executor="ray", overrides=[f"resources.{k}={v}" for k, v in fix.items()])
    assert len(report.trained) == 2 and not report.failed


def test_a_joined_cluster_is_not_checked(write_spec, fake_ray):
    """A cluster joined by address may add GPU nodes on demand (an autoscaler): the request goes to Ray."""
    ray = fake_ray({"CPU": 2.0})
    spec = write_spec(resources={"gpus": 0.5}, **KEYS)
    report = run_study(spec, progress=False, executor="ray", address="auto")
    assert [r["num_gpus"] for r in ray.requests] == [0.5] and len(report.trained) == 2
