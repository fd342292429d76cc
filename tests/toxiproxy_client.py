"""Drives faultline's admin API with a third-party Toxiproxy client, toxiproxy-python 0.1.1.

Usage: toxiproxy_client.py ADMIN_HOST:PORT UPSTREAM_HOST:PORT LATENCY_MS LISTEN_HOST:PORT

Run by tests/toxiproxy_client.rs. After each step that changes the data path, the script prints
one line, `STEP LISTEN_ADDRESS`, and waits for `go` on stdin, so the Rust test can check the
effect through real sockets. Any mismatch exits non-zero with a message on stderr.
"""

import json
import os
import sys

from toxiproxy import Toxiproxy
from toxiproxy.exceptions import ProxyExists

PROXY = "py_echo"
TOXIC = "latency_downstream"  # Toxiproxy's default name: <type>_<stream>


def check(what, got, want):
    if got != want:
        sys.exit(f"toxiproxy_client.py: {what}: got {got!r}, want {want!r}")


def step(name, listen):
    """Tells the Rust test what to measure, and waits until it has."""
    print(name, listen, flush=True)
    line = sys.stdin.readline().strip()
    if line != "go":
        sys.exit(f"toxiproxy_client.py: after {name}: expected 'go' on stdin, got {line!r}")


def main():
    admin, upstream, latency_ms, listen = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    host, port = admin.rsplit(":", 1)
    # The client uses `requests`; keep any HTTP proxy in the environment away from loopback.
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = host

    server = Toxiproxy()
    server.update_api_consumer(host, int(port))
    check("running()", server.running(), True)
    version = json.loads(server.version())["version"]
    check("version() is 2.x", version.split(".")[0], "2")
    check("proxies() before create", server.proxies(), {})

    # create without a listen address: the client sends 127.0.0.1:0 and reads back the port.
    scratch = server.create(upstream=upstream, name="py_scratch")
    scratch_host, scratch_port = scratch.listen.rsplit(":", 1)
    check("default listen host", scratch_host, "127.0.0.1")
    if int(scratch_port) == 0:
        sys.exit("toxiproxy_client.py: default listen reports port 0, not the bound port")
    check("destroy() scratch", server.destroy(scratch), True)

    # create on the address the test chose (it re-binds after a disable; see the Rust side).
    proxy = server.create(upstream=upstream, name=PROXY, listen=listen)
    check("created name", proxy.name, PROXY)
    check("created upstream", proxy.upstream, upstream)
    check("created enabled", proxy.enabled, True)
    check("created listen", proxy.listen, listen)
    check("get_proxy().listen", server.get_proxy(PROXY).listen, listen)
    try:
        server.create(upstream=upstream, name=PROXY)
        sys.exit("toxiproxy_client.py: creating a duplicate proxy did not raise ProxyExists")
    except ProxyExists:
        pass

    # add a latency toxic, then list it.
    proxy.add_toxic(type="latency", attributes={"latency": latency_ms})
    toxics = proxy.toxics()
    check("toxic names", sorted(toxics), [TOXIC])
    toxic = toxics[TOXIC]
    check("toxic type", toxic.type, "latency")
    check("toxic stream", toxic.stream, "downstream")
    check("toxic toxicity", toxic.toxicity, 1.0)
    check("toxic latency", toxic.attributes.get("latency"), latency_ms)
    check("get_toxic().name", proxy.get_toxic(TOXIC).name, TOXIC)
    step("toxic-added", proxy.listen)

    # disable and re-enable, with the client's context manager.
    with proxy.down():
        check("enabled while down", server.get_proxy(PROXY).enabled, False)
        step("disabled", proxy.listen)
    check("enabled after down", server.get_proxy(PROXY).enabled, True)

    # remove the toxic.
    check("destroy_toxic()", proxy.destroy_toxic(TOXIC), True)
    check("toxics() after removal", proxy.toxics(), {})
    check("get_toxic() after removal", proxy.get_toxic(TOXIC), None)
    step("toxic-removed", proxy.listen)

    # reset removes toxics the client added.
    proxy.add_toxic(type="timeout", attributes={"timeout": 1})
    check("toxics() before reset", sorted(proxy.toxics()), ["timeout_downstream"])
    check("reset()", server.reset(), True)
    check("toxics() after reset", proxy.toxics(), {})

    # destroy the proxy.
    check("destroy()", server.destroy(proxy), True)
    check("get_proxy() after destroy", server.get_proxy(PROXY), None)
    check("proxies() after destroy", server.proxies(), {})
    step("destroyed", proxy.listen)
    print("ok", flush=True)


if __name__ == "__main__":
    main()
