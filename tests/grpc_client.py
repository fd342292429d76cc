"""Calls faultline.testing.Echo through the agent with a third-party gRPC client, grpcio.

Usage: grpc_client.py ROUTE_HOST:PORT

Run by tests/grpc_client.rs. At start the script generates its Python stubs from
proto/faultline/testing/v1/echo.proto with grpc_tools.protoc into a temporary directory, opens
one insecure (HTTP/2 cleartext) channel to the route, and prints `{"ready": true}`. Then it reads
one JSON command per line on stdin and answers each with one JSON line on stdout:

    {"call": "Unary", "message": "hi"}
    {"call": "ServerStream", "message": "hi", "count": 10, "interval_ms": 0}

    -> {"code": "OK", "details": "", "replies": [{"message": "hi", "sequence": 0}],
        "arrivals_ms": [1.2], "elapsed_ms": 1.3}

`code` is the grpc.StatusCode name the client saw, `details` its message, `replies` the messages
received before the call ended, `arrivals_ms` when each arrived and `elapsed_ms` when the call
ended (both from the call's start). It exits at end of input; anything unexpected exits non-zero
with a message on stderr.
"""

import json
import pathlib
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parent.parent / "proto"
PROTO = "faultline/testing/v1/echo.proto"
# Every call ends by then, so a hung call is reported as DEADLINE_EXCEEDED, not a hung test.
DEADLINE_S = 10.0


def generate_stubs(out_dir):
    """Runs protoc (bundled with grpcio-tools) on echo.proto and imports what it wrote."""
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_ROOT}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            PROTO,
        ]
    )
    if rc != 0:
        sys.exit(f"grpc_client.py: protoc failed on {PROTO_ROOT / PROTO} (exit {rc})")
    sys.path.insert(0, out_dir)
    # protoc writes faultline/testing/v1/echo_pb2{,_grpc}.py: namespace packages, no __init__.py.
    from faultline.testing.v1 import echo_pb2, echo_pb2_grpc

    return echo_pb2, echo_pb2_grpc


def reply_json(reply):
    return {"message": reply.message, "sequence": reply.sequence}


def unary(stub, pb, cmd):
    start = time.monotonic()
    try:
        reply, call = stub.Unary.with_call(pb.EchoRequest(message=cmd["message"]), timeout=DEADLINE_S)
        replies, arrivals = [reply_json(reply)], [ms_since(start)]
        code, details = call.code(), call.details()
    except grpc.RpcError as e:
        replies, arrivals = [], []
        code, details = e.code(), e.details()
    return result(code, details, replies, arrivals, start)


def server_stream(stub, pb, cmd):
    request = pb.StreamRequest(
        message=cmd["message"], count=cmd["count"], interval_ms=cmd["interval_ms"]
    )
    start = time.monotonic()
    call = stub.ServerStream(request, timeout=DEADLINE_S)
    replies, arrivals = [], []
    try:
        for reply in call:
            arrivals.append(ms_since(start))
            replies.append(reply_json(reply))
    except grpc.RpcError:
        pass  # the call's status is read below, the same way for a clean end and a failure
    return result(call.code(), call.details(), replies, arrivals, start)


def ms_since(start):
    return (time.monotonic() - start) * 1000.0


def result(code, details, replies, arrivals, start):
    return {
        "code": code.name,
        "details": details or "",
        "replies": replies,
        "arrivals_ms": arrivals,
        "elapsed_ms": ms_since(start),
    }


CALLS = {"Unary": unary, "ServerStream": server_stream}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: grpc_client.py ROUTE_HOST:PORT")
    target = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="faultline-grpc-stubs-") as out_dir:
        pb, pb_grpc = generate_stubs(out_dir)
        # Loopback only: keep any proxy named in the environment out of the way.
        options = [("grpc.enable_http_proxy", 0)]
        with grpc.insecure_channel(target, options=options) as channel:
            stub = pb_grpc.EchoStub(channel)
            print(json.dumps({"ready": True}), flush=True)
            for line in sys.stdin:
                if not line.strip():
                    continue
                cmd = json.loads(line)
                call = CALLS.get(cmd.get("call"))
                if call is None:
                    sys.exit(f"grpc_client.py: unknown call in {line.strip()!r}")
                print(json.dumps(call(stub, pb, cmd)), flush=True)


if __name__ == "__main__":
    main()
