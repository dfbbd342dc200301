"""Ray, the optional engine that spreads study cells and generation blocks over a cluster.

``pip install "synthbench[ray]"`` installs it. :func:`ray_session` joins the cluster named by
``--address`` (or ``RAY_ADDRESS``; ``auto`` finds one started on this machine with ``ray start``),
or else starts a local one for the run with ``num_cpus`` = ``--workers`` (or the machine's cores),
and shuts down only what it started. Every node must have synthbench installed and see the
input and output folders under the same paths (a shared file system).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from synthbench.errors import ConfigError

INSTALL = 'Ray is not installed: pip install "synthbench[ray]" (or leave out --executor ray to use local processes)'
CONNECT_TIMEOUT_S = 10.0


def import_ray():
    """The ray module, or one ConfigError line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL) from None
    return ray


def check_address(address: str | None) -> None:
    """Refuse at once (before anything is written, not after Ray's long retries) an address that
    is not HOST:PORT / auto / ray://HOST:PORT, or a HOST:PORT nobody answers on."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not HOST:PORT (as 'ray start --head' prints it), 'auto' or "
                          "ray://HOST:PORT; or leave out --address to start a local cluster")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S) as conn:
            # Ray's GCS and Ray Client are gRPC (HTTP/2) servers, which answer the HTTP/2 preface
            # with a SETTINGS frame; any other listener (a web server, a wrong port) would leave
            # ray.init retrying for minutes, printing C++ warnings.
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        raise ConfigError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one there with "
                          "'ray start --head', or leave out --address to start a local one") from None
    if len(head) < 9 or head[3] != 4:  # frame type 4: SETTINGS
        raise ConfigError(f"{address} answers, but not as a Ray cluster (is it the port 'ray start --head' printed?); "
                          "start one there with 'ray start --head', or leave out --address to start a local one")


@contextmanager
def ray_session(address: str | None, workers: int | None) -> Iterator:
    """The ray module, connected: to ``address`` / RAY_ADDRESS, to the session already started in
    this process (e.g. by a test), or to a new local cluster shut down at the end."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        check_address(address)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot join the Ray cluster at {address}: {' '.join(str(exc).split())[:300]}; "
                              "start one with 'ray start --head', or leave out --address to start a local "
                              "one") from None
    else:
        from synthbench.study.executors import machine_workers

        ray.init(num_cpus=workers or machine_workers(), **options)
    try:
        yield ray
    finally:
        ray.shutdown()
