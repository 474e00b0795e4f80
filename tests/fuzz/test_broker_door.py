"""Fuzzing running nodes from the broker side: what any client of the broker can send.

Four real nodes share one in-memory broker (LoopbackBroker) in a background thread with its
own Trio loop: ``central`` (a sender with a real outbox and ACK inbox, the central error
logger and the key and ACL authority; no signature check), ``ship1`` (no signature check:
it runs what arrives), ``ship3`` (``enable_signature_check``, trusting central's key alone)
and ``ship4`` (``delivery = "jetstream"``: it also takes messages from its consumer's
deliver subject). A bare client of the broker, ``mallory``, throws at them:

* any payload -- random bytes, random CBOR (huge integers, floats, tags, deep nesting),
  message-shaped CBOR arrays, a too-deep previousMessage chain, compression bombs -- on the
  nodes' method subjects (EventACK and EventNACK, also the other kind), ship4's deliver
  subject and central's error log, with or without a reply subject, with random and
  plausible headers (``sotp``, ``serial``, ``cmp``, ``fromNode``, ``Status``);
* well-formed encodings (the project's codec) of hostile messages: odd values in every
  field, long texts, previousMessage chains, methodArgs of odd shapes, data that is not what
  the method expects (relay envelopes, copy-protocol notices, copy init records, key and ACL
  documents), schedules, relay fields, ``argSignature`` garbage; to ship3, also signatures
  by an unknown key, by central's key on an altered message, and hellos signed by the key
  they carry;
* forged ACKs on central's ACK inbox while it has messages in flight to ``ship2`` (mallory
  plays a ship2 that takes them and never answers, so it knows the inbox and the ids);
* forged JetStream answers (publish acknowledgements and ``$JS.API`` replies) to central's
  publishes into a stream, and to ship4 asking for its stream and consumer, on a broker
  that has no JetStream of its own.

After every example every node must be whole: no process restarted and no handler crashed
anywhere in the four trees, no traceback logged, nothing written outside the nodes' homes,
ship3 ran nothing unsigned or altered (but a hello) -- and a good request still goes from
central to each ship and its reply comes back.

Nothing generated can run a program or write outside the test's folder (the nodes run as
whoever runs the tests, maybe root): REQCliCommand, REQCliCommandCont and REQOpProcessStop
are never thrown (nor named as reply method), and every path a message names is relative
with at most three "..", the depth of the nodes' homes below the test's folder.

Bounded for CI (``FUZZ_EXAMPLES``, default 15 per door; raise it for a longer hunt); a
failure prints the example, which then belongs in ``@example`` below as a regression test.
An example that breaks the nodes gets a fresh network for the next one.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cbor2
import lz4.frame
import pytest
import trio
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from steward_otp import codec
from steward_otp.delivery.protocol import VERSION_HEADER
from steward_otp.jetstream import deliver_subject
from steward_otp.loopback import LoopbackBroker, LoopbackTransport
from steward_otp.message import MAX_PREVIOUS_DEPTH, Message
from steward_otp.methods import BUILTIN_METHODS
from steward_otp.node import Node
from steward_otp.security.keyfiles import SigningKey
from steward_otp.security.signing import sign, sign_batch
from steward_otp.supervisors import ProcessSnapshot
from steward_otp.transport import InboundMessage, Subscription
from tests.nodes import node_config

pytestmark = pytest.mark.integration

T = TypeVar("T")

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SETTLE_TIMEOUT = 10.0
GOOD_TIMEOUT = 20.0
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Huge(int):
    """An integer of more digits than int() and repr() take (sys.get_int_max_str_digits),
    shown by name (hypothesis prints the examples it draws)."""

    def __repr__(self) -> str:
        return "HUGE" if self > 0 else "-HUGE"


HUGE = Huge(10**5000)
MALLORY = SigningKey.generate()

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

NODES = ("central", "ship1", "ship3", "ship4")
OPEN, CHECKING, STREAMING = "ship1", "ship3", "ship4"
ERROR_LOG = "errorCentral.REQErrorLog"

# Never thrown: they run programs, or stop what the good message needs (an unsigned
# REQOpProcessStop on a node without signature checks is obeyed by design).
UNSAFE = {"REQCliCommand", "REQCliCommandCont", "REQOpProcessStop"}
SERVED = [
    name
    for name in BUILTIN_METHODS.routable_names()
    if name not in UNSAFE and name != "REQErrorLog"  # central's error log: a door of its own
]
REPLY_METHODS = [
    "", "REQNone", "REQToFileAppend", "REQToFile", "REQToFileNACK", "REQToConsole", "REQTest",
    "REQPong", "REQKeysDeliverUpdate", "REQAclDeliverUpdate", "REQNoSuchMethod",
]  # fmt: skip
# Methods a checking node runs for anybody: a hello signed by the key it carries, and key
# deliveries (their handler checks the signature itself).
RUN_UNSIGNED = {"REQHello", "REQKeysDeliverUpdate"}


def kind_of(method: str) -> str:
    return BUILTIN_METHODS.require(method).kind.value


# -- the network ------------------------------------------------------------------------------


class Tracebacks(logging.Handler):
    """Every log record that carries a traceback: a crash somewhere, caught or not."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None and record.exc_info[0] is not None:
            self.records.append(record)


@attrs.frozen
class Health:
    """What must not change while a node takes hostile input."""

    restarts: dict[str, int]
    crashes: dict[str, int]
    """``handler_crashes`` per Subscriber."""
    tracebacks: int

    def problems_since(self, before: Health) -> list[str]:
        found = [
            f"{path} restarted ({before.restarts.get(path, 0)} -> {count})"
            for path, count in self.restarts.items()
            if count > before.restarts.get(path, 0)
        ]
        found += [
            f"{path}: a handler crashed ({before.crashes.get(path, 0)} -> {count})"
            for path, count in self.crashes.items()
            if count > before.crashes.get(path, 0)
        ]
        if self.tracebacks > before.tracebacks:
            found.append(f"{self.tracebacks - before.tracebacks} traceback(s) logged")
        return found


def _walk(snapshot: ProcessSnapshot) -> Iterator[ProcessSnapshot]:
    yield snapshot
    for child in snapshot.children:
        yield from _walk(child)


class Net:
    """The four nodes on one loopback broker, in a thread of their own; mallory beside them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.broker = LoopbackBroker()
        central = self._node("central", is_central_auth=True)  # the key and ACL authority
        self.central_key: SigningKey = central.security.key
        self.nodes: dict[str, Node] = {
            "central": central,
            OPEN: self._node(OPEN),
            CHECKING: self._node(
                CHECKING,
                enable_signature_check=True,
                central_public_key=self.central_key.public_text,
            ),
            # Takes its messages from a JetStream consumer's deliver subject (the broker has
            # no JetStream: nothing but mallory publishes there).
            STREAMING: self._node(STREAMING, delivery="jetstream"),
        }
        self.mallory = LoopbackTransport(self.broker, name="mallory")
        self.inbox = ""
        """mallory's reply subject: the ACKs of what it sends arrive there (and are dropped)."""
        self.acks: Subscription | None = None
        self.ship2: Subscription | None = None
        self.jetstream_api_answer: bytes | None = None
        """Set before :meth:`start`: mallory answers every JetStream API request with it
        from the start (ship4 asks for its stream and consumer as it starts)."""
        self.ship2_sent: dict[str, str] = {}
        """Messages central sent to ship2 (mallory): id -> the ACK inbox they name."""
        self.tracebacks = Tracebacks()
        self._tokens = itertools.count(1)
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="broker-door", daemon=True)

    def _node(self, name: str, **settings: Any) -> Node:
        config = node_config(
            self.base,
            name,
            "nats://127.0.0.1:1",
            enable_socket=False,
            enable_read_folder=False,
            default_method_timeout=5,
            **settings,
        )
        return Node(config, transport=LoopbackTransport(self.broker, name=name))

    # ------------------------------------------------------------------ the thread

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # a node gave up: reported by run() (see ended())
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
            if self.jetstream_api_answer is not None:
                api = self.mallory.subscribe("$JS.API.>")
                nursery.start_soon(self._answer_all, api, self.jetstream_api_answer)
            for node in self.nodes.values():
                await stack.enter_async_context(node)
            self.inbox = self.mallory.new_inbox()
            self.acks = self.mallory.subscribe(self.inbox)
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _answer_all(self, subscription: Subscription, payload: bytes) -> None:
        async for request in subscription.receive:
            if request.reply:
                self.publish(request.reply, payload, None, "")

    def start(self) -> None:
        logging.getLogger("steward_otp").addHandler(self.tracebacks)
        self._thread.start()
        assert self._ready.wait(60), "the nodes did not start"
        assert self._failure is None, self._failure
        self.run(self.good_messages)  # every Subscriber and Publisher the check needs is up

    def stop(self) -> None:
        try:
            if self._token is not None and self._stop is not None:
                with contextlib.suppress(trio.RunFinishedError):
                    trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(60)
        finally:
            logging.getLogger("steward_otp").removeHandler(self.tracebacks)

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` in the nodes' Trio loop."""
        assert self._token is not None and self._thread.is_alive(), self.ended()
        try:
            return trio.from_thread.run(fn, *args, trio_token=self._token)
        except (trio.Cancelled, trio.RunFinishedError) as exc:
            self._thread.join(10)
            raise AssertionError(self.ended()) from exc

    def ended(self) -> str:
        """Why the nodes' loop ended: a node gave up (its root supervisor escalated)."""
        reasons: list[str] = []
        pending: list[BaseException] = [] if self._failure is None else [self._failure]
        while pending:
            exc = pending.pop()
            if isinstance(exc, BaseExceptionGroup):
                pending.extend(exc.exceptions)
            else:
                reasons.append(f"{type(exc).__name__}: {exc}")
        crashes = dict.fromkeys(r.getMessage()[:300] for r in self.tracebacks.records)
        return (
            "the nodes' loop ended: "
            + ("; ".join(reasons) or "(no failure recorded)")
            + "".join(f"\n  logged: {text}" for text in list(crashes)[:3])
        )

    # ------------------------------------------------------------------ in the loop

    def health(self) -> Health:
        restarts: dict[str, int] = {}
        crashes: dict[str, int] = {}
        for name, node in self.nodes.items():
            for process in _walk(node.snapshot()):
                restarts[f"{name}:{process.path}"] = process.restart_count
                if "handler_crashes" in process.info:
                    crashes[f"{name}:{process.path}"] = process.info["handler_crashes"]
        return Health(restarts, crashes, len(self.tracebacks.records))

    def info(self, node: str, path: str) -> dict[str, Any]:
        found = self.nodes[node].snapshot().find(path)
        return {} if found is None or found.state != "running" else dict(found.info)

    def received(self, node: str, path: str) -> tuple[int, int]:
        """(messages received, restarts) of the Subscriber at ``path``."""
        found = self.nodes[node].snapshot().find(path)
        if found is None:
            return -1, -1
        return int(found.info.get("received", -1)), found.restart_count

    async def settle(self, node: str, path: str, before: tuple[int, int]) -> None:
        """Until the Subscriber at ``path`` took one more message (or restarted), and a
        moment more for what it starts."""
        with trio.move_on_after(SETTLE_TIMEOUT):
            while True:
                received, restarts = self.received(node, path)
                if received > before[0] or restarts != before[1]:
                    break
                await trio.sleep(0.005)
        await trio.sleep(0.02)

    async def good_messages(self) -> None:
        """central asks each ship for its public key; the reply must come back."""
        waits = []
        for ship in (OPEN, CHECKING, STREAMING):
            token = f"good-{next(self._tokens)}"
            await self.nodes["central"].submit(
                [
                    Message(
                        to_node=ship,
                        method="REQPublicKey",
                        directory="good",
                        file_name=token,
                        reply_method="REQToFile",
                        ack_timeout=2,
                        retries=10,
                        reply_ack_timeout=2,
                        reply_retries=10,
                        method_timeout=10,
                        jetstream=False,  # the reply too: the broker has no JetStream
                    )
                ]
            )
            waits.append(self.base / "central" / "data" / "good" / ship / token)
        with trio.move_on_after(GOOD_TIMEOUT):
            while not all(len(file_text_bytes(p)) == 32 for p in waits):
                await trio.sleep(0.01)
        late = [str(p) for p in waits if len(file_text_bytes(p)) != 32]
        assert not late, f"no reply to a good message: {late}"

    def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, reply: str
    ) -> None:
        self.mallory.publish_nowait(subject, payload, headers, reply)

    def escaped(self) -> list[Path]:
        """Files written outside the nodes' homes (in the test's folder: see :class:`Nets`)."""
        homes = {self.base / name for name in NODES}
        found: list[Path] = []
        for folder, folders, files in os.walk(self.base.parent.parent.parent):
            here = Path(folder)
            folders[:] = [f for f in folders if here / f not in homes]
            found += [here / f for f in files]
        return found


def file_text_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


class Nets:
    """The network of one test, made again after an example broke it: each example starts
    with whole nodes, also while hypothesis shrinks a failure."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.made = 0
        self.net: Net | None = None

    @contextlib.contextmanager
    def use(self) -> Iterator[Net]:
        if self.net is None:
            self.made += 1
            # Three folders down: a path escape of up to three ".." stays in the test's.
            self.net = Net(self.tmp_path / f"net{self.made}" / "a" / "b" / "c")
            self.net.start()
        try:
            yield self.net
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        net, self.net = self.net, None
        if net is not None:
            net.stop()
        # Garbage of a broken network (crashed processes) collected now, not while pytest
        # reports: CPython 3.11 can then fail in ast.parse with "AST constructor recursion
        # depth mismatch" (an INTERNALERROR instead of the failure).
        gc.collect()


@pytest.fixture
def nets(tmp_path: Path) -> Iterator[Nets]:
    made = Nets(tmp_path)
    try:
        yield made
    finally:
        made.close()


def throw(
    net: Net,
    node: str,
    method_path: str,
    send: Callable[[], None],
    *,
    expect_delivery: bool = True,
) -> Health:
    """Health before; ``send()`` in the loop; wait until the target Subscriber took it."""

    async def go() -> Health:
        before = net.health()
        taken = net.received(node, method_path)
        send()
        if expect_delivery:
            await net.settle(node, method_path, taken)
        else:
            await trio.sleep(0.02)
        return before

    return net.run(go)


def assert_whole(net: Net, before: Health) -> None:
    """The good messages still go both ways, and nothing broke meanwhile."""
    net.run(net.good_messages)

    async def after() -> Health:
        await trio.sleep(0.05)
        return net.health()

    problems = net.run(after).problems_since(before)
    if problems:
        last = net.tracebacks.records[before.tracebacks :][:1]
        detail = f"\nfirst traceback: {last[0].getMessage()}" if last else ""
        raise AssertionError("; ".join(problems) + detail)
    assert net.escaped() == []


# -- what to throw ----------------------------------------------------------------------------

node_names = st.sampled_from(
    ["mallory", "central", "ship1", "ship2", "ship3", "ship4", "all", "x.y", "a-b_c"]
)
short_text = st.text(max_size=12)
# Long texts: near the broker's max_payload (1 MiB), and longer than a file name may be.
long_text = st.sampled_from(["x" * 300, "é" * 5000, "y" * 900_000])
texts = short_text | long_text


def json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(short_text, inner, max_size=3))


huge_ints = st.sampled_from([HUGE, Huge(-HUGE), 2**64, -(2**64) - 1, 2**63, INT64_MIN - 1])
cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    huge_ints,
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.just(cbor2.undefined),
)
TAGS = [0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 100, 256, 258, 260, 261, 1004, 55799]
cbor_values = st.recursive(
    cbor_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=6) | st.integers(-5, 5), inner, max_size=4),
        st.builds(cbor2.CBORTag, st.sampled_from(TAGS) | st.integers(0, 2**64 - 1), inner),
    ),
    max_leaves=15,
)


def cbor_bytes(value: object) -> bytes:
    try:
        return bytes(cbor2.dumps(value))
    except Exception:  # some generated tags cannot be encoded: not a useful example
        assume(False)
        raise


class Blob(bytes):
    """Bytes shown by how they were made (hypothesis prints the examples it draws)."""

    label = ""

    def __repr__(self) -> str:
        return self.label or super().__repr__()


def blob(data: bytes, label: str) -> Blob:
    made = Blob(data)
    made.label = label
    return made


DEEP_JSON = blob(b"[" * 5000, "b'[' * 5000")
DEEP_JSON_OBJECT = blob(b'{"a":' * 5000, "b'{\"a\":' * 5000")
LONG_NUMBER = blob(b"9" * 5000, "b'9' * 5000")


def deep(depth: int, opener: bytes = b"\x81", leaf: bytes = b"\x00") -> Blob:
    """``depth`` nested one-element CBOR arrays (or whatever ``opener`` opens)."""
    return blob(opener * depth + leaf, f"{opener!r} * {depth} + {leaf!r}")


HEADER_VALUES = ["2", "999", "", "x", "02", " 2", "2 ", "²", "٢", "1" * 5000, "-1", "0"]
headers = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "serial": st.sampled_from(["cbor", "gob", "", "json", "CBOR"]) | short_text,
            "cmp": st.sampled_from(["none", "lz4", "g", "z", "", "x", "gzip"]) | short_text,
            VERSION_HEADER: st.sampled_from(HEADER_VALUES) | short_text,
            "fromNode": node_names | short_text,
            "Status": st.sampled_from(["503", "408", ""]),
        },
    ).map(lambda h: {k: v.replace("\r", "").replace("\n", "") for k, v in h.items()}),
)
plausible_headers = st.builds(
    lambda version, cmp: {"serial": "cbor", "cmp": cmp, VERSION_HEADER: version},
    st.sampled_from(HEADER_VALUES),
    st.sampled_from(["none", "lz4", "g", "x"]),
)
integers = st.one_of(
    st.sampled_from([-1, 0, 1, 2, INT64_MAX, INT64_MIN]),
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
)
timeouts = st.sampled_from([-1, 0, 1, 2, 3])
schedules = st.one_of(
    st.just(()),
    st.tuples(st.sampled_from([-1, 0, 1, INT64_MAX, INT64_MIN]), st.sampled_from([-1, 0, 1, 2])),
    st.lists(st.integers(-2, 2), min_size=1, max_size=3).map(tuple),
)
# Paths stay inside the test's folder whatever the node makes of them: relative, no more
# ".." than the homes are deep (three), never absolute.
SAFE_DIRS = ["", "out", "a/b", "./out", ".", "../../escaped", "./../escaped", "a/../../../x"]
SAFE_FILES = ["out.txt", "", ".", "..", "a/b", "../escaped", "x\x00y", " ", "\u202e"]


def _safe_text(text: str) -> bool:
    return not text.startswith(("/", "~", "\\")) and ".." not in text and "\x00" not in text


paths = st.sampled_from(SAFE_DIRS) | texts.filter(_safe_text)
file_names = st.sampled_from(SAFE_FILES) | texts.filter(_safe_text)
COPY_ID = "0123456789abcdef0123456789abcdef"
SHA = "ab" * 32
copy_args = st.one_of(
    st.lists(short_text, max_size=5),
    st.tuples(
        st.sampled_from(["want", "chunk", "result", "abort", "x", ""]),
        st.sampled_from([COPY_ID, COPY_ID.upper(), "", "x" * 32]) | short_text,
        st.lists(
            st.sampled_from(["0", "1", "-1", "9" * 13, "9" * 5000, SHA, "ok", "failed", "²"])
            | short_text,
            max_size=4,
        ),
    ).map(lambda t: [t[0], t[1], *t[2]]),
)
copy_src_args = st.one_of(
    st.lists(short_text.filter(_safe_text), max_size=7),
    st.tuples(
        st.sampled_from(["missing.txt", "./etc", "./etc/signing", "a", "", "/etc/hostname"]),
        node_names,
        paths,
        st.lists(st.sampled_from(["1", "0", "-1", "9" * 5000, "1e3", "777", "x"]), max_size=3),
    ).map(lambda t: [t[0], t[1], t[2], *t[3]]),
)


def init_record(values: dict[str, Any]) -> bytes:
    return json.dumps(values).encode()


copy_inits = st.fixed_dictionaries(
    {
        "copy_id": st.sampled_from([COPY_ID, "nope"]),
        "src_node": node_names,
        "dst_node": node_names,
        "src_path": paths,
        "dst_path": paths,
        "size": st.sampled_from([0, 1, 10, 2**62, -1, HUGE]),
        "mtime_ns": integers,
        "chunk_size": st.sampled_from([1, 4, 1_000_000, 0, -1, 2**40]),
        "sha256": st.sampled_from([SHA, "x"]),
        "file_mode": st.sampled_from([0o644, -1, 0o17777]),
        "folder_permission": st.sampled_from([0o755, 0]),
        "max_time": st.sampled_from([1, 2, 0, -1]),
        "ack_timeout": st.sampled_from([1, 0, 10**6]),
        "retries": st.sampled_from([0, 1, -1]),
    }
)


def _json_huge(record: dict[str, Any]) -> bytes:
    try:
        return init_record(record)
    except ValueError:  # json.dumps of a 5000-digit int: written by hand
        return init_record({**record, "size": 0}).replace(b'"size": 0', b'"size": ' + b"9" * 5000)


json_documents = st.one_of(
    st.sampled_from([DEEP_JSON, DEEP_JSON_OBJECT, LONG_NUMBER]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | short_text,
        json_containers,
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"central": node_names | st.integers(), "keys": st.dictionaries(short_text, short_text)}
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "node": node_names | st.integers(),
            "acl": st.dictionaries(short_text, st.lists(short_text, max_size=2), max_size=2),
            "hash": st.sampled_from(["", "00" * 32]),
            "version": integers,
        }
    ).map(lambda v: json.dumps(v).encode()),
)


def data_for(method: str) -> st.SearchStrategy[bytes]:
    generic = st.binary(max_size=64) | json_documents
    if method == "REQCopyDst":
        return copy_inits.map(_json_huge) | generic
    if method == "REQRelay":
        return relayed_payloads | generic
    if method in {"REQHello", "REQKeysRequestUpdate", "REQAclRequestUpdate"}:
        return st.binary(min_size=32, max_size=32) | generic
    return generic


def args_for(method: str) -> st.SearchStrategy[list[str]]:
    if method.startswith("REQSUBCopy"):
        return copy_args
    if method == "REQCopySrc":
        return copy_src_args
    if method.startswith("REQHttpGet"):
        urls = st.sampled_from(["http://127.0.0.1:1/", "", "file:///nonexistent", "x"])
        counts = st.sampled_from(["1", "0", "-1", "²", "9" * 5000, " 1", "1.5"])
        return st.tuples(urls, st.lists(counts, max_size=3)).map(lambda t: [t[0], *t[1]])
    if method == "REQTailFile":
        return st.lists(st.sampled_from(["missing.log", "", "."]) | short_text, max_size=2)
    if method == "REQOpProcessStart":
        return st.lists(st.sampled_from([*SERVED, "REQCliCommand", "x"]), max_size=2)
    if method == "REQAclImport":
        return st.lists(json_documents.map(lambda b: b.decode()), min_size=1, max_size=1)
    return st.lists(texts.filter(lambda t: "://" not in t), max_size=4)


def _previous(depth: int) -> st.SearchStrategy[Message | None]:
    if depth == 0:
        return st.none()
    return st.none() | st.builds(
        lambda prev, d, f, to, m: Message(
            to_node=to, method=m, directory=d, file_name=f, previous_message=prev
        ),
        _previous(depth - 1),
        paths,
        file_names,
        node_names,
        st.sampled_from(REPLY_METHODS),
    )


@st.composite
def hostile_messages(
    draw: st.DrawFn, to_node: str = OPEN, methods: list[str] = SERVED, relayed: bool = False
) -> Message:
    """A well-formed message whose every field may be hostile (but safe to run here)."""
    method = draw(st.sampled_from(methods))
    return Message(
        to_node=draw(st.just(to_node) | node_names) if not relayed else draw(node_names),
        to_nodes=draw(st.lists(node_names | short_text, max_size=2)),
        id=draw(st.just("") | st.sampled_from(["mallory:1", "x"]) | texts)
        if draw(st.booleans())
        else f"mallory:{uuid.uuid4().hex}",
        data=draw(data_for(method)) if not relayed else draw(st.binary(max_size=16)),
        method=method,
        method_args=draw(args_for(method)),
        arg_signature=draw(st.binary(max_size=16) | st.deferred(lambda: signature_records)),
        reply_method=draw(st.sampled_from(REPLY_METHODS)),
        reply_method_args=draw(st.lists(texts, max_size=2)),
        is_reply=draw(st.booleans()),
        from_node=draw(node_names),
        ack_timeout=draw(integers),
        retry_wait=draw(integers),
        is_sub_published_msg=draw(st.booleans()),
        retries=draw(integers),
        reply_ack_timeout=draw(timeouts),
        reply_retries=draw(st.sampled_from([0, 1, 2])),
        method_timeout=draw(timeouts),
        reply_method_timeout=draw(integers),
        directory=draw(paths),
        file_name=draw(file_names),
        previous_message=draw(_previous(MAX_PREVIOUS_DEPTH)),
        schedule=draw(schedules),
        relay_via_node=draw(st.just("") | node_names | short_text),
        relay_reply_method=draw(st.just("") | st.sampled_from(REPLY_METHODS)),
        relay_from_node=draw(st.just("") | node_names),
        relay_original_method=draw(st.just("") | st.sampled_from(SERVED)),
        jetstream=draw(st.none() | st.booleans()),
    )


relayed_payloads = st.deferred(
    lambda: hostile_messages(methods=[m for m in SERVED if m != "REQRelay"], relayed=True).map(
        lambda m: codec.encode(m, compress_threshold=None).payload
    )
)


def wire_values(message: Message) -> list[Any]:
    """The CBOR array ``message`` goes as on the wire."""
    values = cbor2.loads(codec.cbor_payload(message))
    assert isinstance(values, list)
    return values


def nested_wire(depth: int) -> bytes:
    """A message whose previousMessage chain is ``depth`` long (deeper than allowed, too)."""
    base = wire_values(Message(to_node=OPEN, id="mallory:deep", from_node="mallory"))
    base += ["", "", "", ""][: max(0, 27 - len(base))]
    values: Any = None
    for _ in range(depth):
        values = [*base[:21], values, *base[22:]]
    return cbor_bytes([*base[:21], values, *base[22:]])


def is_safe(payload: bytes) -> bool:
    """Whether a payload that decodes as a message only writes inside the test's folder."""
    try:
        message = codec.decode(payload, codec.RAW_CBOR_HEADERS)
    except codec.DecodeError:
        return True
    chain: Message | None = message
    while chain is not None:
        if not (
            _safe_text(chain.directory.replace("../", "")) and chain.directory.count("..") <= 3
        ):
            return False
        chain = chain.previous_message
    return message.method not in UNSAFE and message.reply_method not in UNSAFE


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """A valid message's CBOR array with a few elements replaced by random values."""
    values = wire_values(draw(hostile_messages()))
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(values) + 2))
        value = draw(cbor_values)
        if index < len(values):
            values[index] = value
        else:
            values.append(value)
    return cbor_bytes(values)


def compress(cmp: str, raw: bytes) -> bytes:
    if cmp == "lz4":
        return bytes(lz4.frame.compress(raw))
    if cmp == "g":
        return gzip.compress(raw)
    return raw


payloads = st.one_of(
    st.binary(max_size=2048),
    cbor_values.map(cbor_bytes),
    st.lists(cbor_values, min_size=23, max_size=29).map(cbor_bytes),
    mutated_messages(),
    hostile_messages().map(codec.cbor_payload),
    st.integers(0, 2 * MAX_PREVIOUS_DEPTH).map(nested_wire),
    st.sampled_from([deep(5000), deep(5000, b"\xa1\x00"), deep(200, b"\xd8\x1c\x81")]),
)

LZ4_BOMB = blob(lz4.frame.compress(bytes(65 * 2**20)), "lz4(65 MiB of zeros)")
GZIP_BOMB = blob(gzip.compress(bytes(65 * 2**20)), "gzip(65 MiB of zeros)")


# -- the doors ------------------------------------------------------------------------------
TARGETS = ["open", "checking", "stream", "errorlog"]


def door(target: str, method: str, other_kind: bool = False) -> tuple[str, str, str]:
    """(node, subject, process) where ``target`` takes a message for ``method``: a node's
    method subject (``open``: ship1, ``checking``: ship3, ``central``: the key and ACL
    authority, unchecked too; on the other kind's subject with ``other_kind``), ship4's
    JetStream deliver subject, or central's error log."""
    if target == "stream":
        return STREAMING, deliver_subject(STREAMING), "node/inbound/stream"
    if target == "errorlog":
        return "central", f"{ERROR_LOG}.EventACK", f"node/inbound/{ERROR_LOG}"
    kind = kind_of(method)
    if other_kind:
        kind = "EventACK" if kind == "EventNACK" else "EventNACK"
    node = {"open": OPEN, "checking": CHECKING, "central": "central"}[target]
    return node, f"{node}.{method}.{kind}", f"node/inbound/{method}"


@FUZZ
@given(
    target=st.sampled_from(TARGETS),
    method=st.sampled_from(SERVED),
    other_kind=st.booleans(),
    payload=payloads,
    headers=headers | plausible_headers,
    compressed=st.booleans(),
    with_reply=st.booleans(),
)
# A sotp header int() cannot read crashes the Subscriber (ValueError in triage).
@example(
    target="open",
    method="REQPing",
    other_kind=False,
    payload=codec.cbor_payload(
        Message(to_node=OPEN, id="m:1", from_node="mallory", method="REQPing")
    ),
    headers={"serial": "cbor", "cmp": "none", VERSION_HEADER: "²"},
    compressed=False,
    with_reply=True,
)
@example(
    target="open",
    method="REQPing",
    other_kind=False,
    payload=codec.cbor_payload(
        Message(to_node=OPEN, id="m:2", from_node="mallory", method="REQPing")
    ),
    headers={"serial": "cbor", "cmp": "none", VERSION_HEADER: "1" * 5000},
    compressed=False,
    with_reply=False,
)
@example(
    target="open",
    method="REQPing",
    other_kind=False,
    payload=LZ4_BOMB,
    headers={"serial": "cbor", "cmp": "lz4", VERSION_HEADER: "2"},
    compressed=False,
    with_reply=True,
)
@example(
    target="open",
    method="REQToFile",
    other_kind=False,
    payload=GZIP_BOMB,
    headers={"serial": "cbor", "cmp": "g"},
    compressed=False,
    with_reply=True,
)
@example(
    target="open",
    method="REQToFile",
    other_kind=False,
    payload=deep(5000),
    headers={"serial": "cbor", "cmp": "none", VERSION_HEADER: "2"},
    compressed=False,
    with_reply=True,
)
def test_method_subjects_take_any_payload(
    nets: Nets,
    target: str,
    method: str,
    other_kind: bool,
    payload: bytes,
    headers: dict[str, str] | None,
    compressed: bool,
    with_reply: bool,
) -> None:
    assume(is_safe(payload))
    if compressed and headers is not None:
        payload = compress(headers.get("cmp", ""), payload)
    node, subject, path = door(target, method, other_kind)
    with nets.use() as net:
        served = net.broker.interest(subject) > 0
        before = throw(
            net,
            node,
            path,
            lambda: net.publish(subject, payload, headers, net.inbox if with_reply else ""),
            expect_delivery=served,
        )
        assert_whole(net, before)


def throw_message(
    net: Net,
    node: str,
    path: str,
    message: Message,
    subject: str,
    headers: dict[str, str],
    reply: str,
) -> Health:
    """:func:`throw` for ``message`` in the project's encoding, with ``headers`` added."""
    encoded = codec.encode(message)
    return throw(
        net,
        node,
        path,
        lambda: net.publish(subject, encoded.payload, {**encoded.headers, **headers}, reply),
        # More than the broker's max_payload: refused at the door, never delivered.
        expect_delivery=len(encoded.payload) <= net.broker.max_payload,
    )


@FUZZ
@given(
    message=hostile_messages(),
    target=st.sampled_from(["open", "open", "central", "stream", "errorlog"]),
    other_subject=st.none() | st.sampled_from(SERVED),
    version=st.sampled_from(["2", "2", "2", None, "3"]),
    with_reply=st.booleans(),
)
# A REQHttpGetScheduled whose interval has more digits than int() reads crashes its
# Subscriber at every start (the message is stored, ACKed and unfinished): the node gives up.
@example(
    message=Message(
        to_node=OPEN,
        id="mallory:sched",
        from_node="mallory",
        method="REQHttpGetScheduled",
        method_args=("http://127.0.0.1:1/", "9" * 5000, "1"),
        ack_timeout=5,
        reply_method="REQNone",
    ),
    target="open",
    other_subject=None,
    version="2",
    with_reply=True,
)
# A reply method the node does not know: it used to crash the Subscriber at every start
# (UnknownMethodError out of HandlerRunner._fail); now the reply goes as EventACK.
@example(
    message=Message(
        to_node=OPEN,
        id="mallory:reply",
        from_node="mallory",
        method="REQOpProcessList",
        reply_method="REQNoSuchMethod",
        ack_timeout=5,
    ),
    target="open",
    other_subject=None,
    version="2",
    with_reply=True,
)
# JSON nested deeper than json.loads goes: RecursionError, a handler crash, where a
# document is read from a message (a copy's init record, an ACL import on central).
@example(
    message=Message(
        to_node=OPEN,
        id="mallory:copy",
        from_node="mallory",
        method="REQCopyDst",
        data=b"[" * 5000,
        ack_timeout=5,
        reply_method="REQNone",
    ),
    target="open",
    other_subject=None,
    version="2",
    with_reply=True,
)
@example(
    message=Message(
        to_node="central",
        id="mallory:acl",
        from_node="mallory",
        method="REQAclImport",
        method_args=("[" * 5000,),
        ack_timeout=5,
        reply_method="REQNone",
    ),
    target="central",
    other_subject=None,
    version="2",
    with_reply=True,
)
def test_an_open_node_runs_or_refuses_any_message_cleanly(
    nets: Nets,
    message: Message,
    target: str,
    other_subject: str | None,
    version: str | None,
    with_reply: bool,
) -> None:
    # On its method's subject, or on another method's (the handler is the subject's), on
    # ship4's deliver subject (the handler is the message's), or to central's error log.
    method = other_subject or message.method
    # Not central's purge or cancel: they may take the good messages central sends next.
    assume(target != "central" or method not in {"REQOpQueuePurge", "REQOpQueueCancel"})
    node, subject, path = door(target, method)
    extra = {} if version is None else {VERSION_HEADER: version}
    with nets.use() as net:
        reply = net.inbox if with_reply else ""
        before = throw_message(net, node, path, message, subject, extra, reply)
        assert_whole(net, before)


# -- a node that checks signatures ------------------------------------------------------------

signature_records = st.one_of(
    st.binary(max_size=80),
    cbor_values.map(cbor_bytes),
    st.lists(cbor_values, min_size=5, max_size=8).map(cbor_bytes),
    st.tuples(
        st.sampled_from([1, 2, 0, 3, -1, HUGE, 1.0, True]),
        node_names | st.integers(),
        st.sampled_from([0, -1, int(time.time() * 1000), INT64_MAX, HUGE, 1e300, float("nan")]),
        st.binary(min_size=32, max_size=32) | st.binary(max_size=40),
        st.binary(min_size=64, max_size=64) | st.binary(max_size=70),
        st.lists(
            st.sampled_from([0, 1, 2, 64, 2**32, -1, HUGE])
            | st.lists(st.binary(min_size=32, max_size=32), max_size=40),
            max_size=3,
        ),
    ).map(lambda t: cbor_bytes([t[0], t[1], t[2], t[3], t[4], *t[5]])),
)


def by_mallory(message: Message, signer: str) -> Message:
    return sign(message, MALLORY.private, signer=signer, now=time.time())


def central_then_altered(net: Net, message: Message, batch: bool) -> Message:
    """Signed by central's real key, then changed (as a captured message would be)."""
    if batch:
        values = [list(message.field_values()), list(message.field_values())]
        sign_batch(values, net.central_key.private, signer="central", now=time.time())
        signed = Message.from_field_values(values[0])
    else:
        signed = sign(message, net.central_key.private, signer="central", now=time.time())
    return attrs.evolve(signed, id=f"{message.id}-altered")


@FUZZ
@given(
    message=hostile_messages(to_node=CHECKING),
    signing=st.sampled_from(
        ["record", "mallory", "mallory-as-central", "central", "batch", "hello"]
    ),
    record=signature_records,
    with_reply=st.booleans(),
)
def test_a_checking_node_runs_nothing_unsigned_and_stays_whole(
    nets: Nets, message: Message, signing: str, record: bytes, with_reply: bool
) -> None:
    with nets.use() as net:
        if signing == "record":
            message = attrs.evolve(message, arg_signature=record)
        elif signing == "mallory":
            message = by_mallory(message, "mallory")
        elif signing == "mallory-as-central":
            message = by_mallory(message, "central")
        elif signing == "hello":  # the one message a checking node runs from anybody
            hello = attrs.evolve(message, method="REQHello", data=MALLORY.public)
            message = by_mallory(attrs.evolve(hello, from_node="mallory"), "mallory")
        else:
            message = central_then_altered(net, message, signing == "batch")
        subject = f"{CHECKING}.{message.method}.{kind_of(message.method)}"
        path = f"node/inbound/{message.method}"
        executed = net.run(_async, lambda: net.info(CHECKING, path).get("executed", 0))
        reply = net.inbox if with_reply else ""
        before = throw_message(net, CHECKING, path, message, subject, {}, reply)
        ran = net.run(_async, lambda: net.info(CHECKING, path).get("executed", 0)) - executed
        if message.method not in RUN_UNSIGNED:
            assert ran == 0, f"{CHECKING} ran an unsigned or altered {message.method}"
        assert_whole(net, before)


async def _async(fn: Callable[[], T]) -> T:
    return fn()


# -- forged ACKs --------------------------------------------------------------------------------

IN_FLIGHT = 4


async def ship2_in_flight(net: Net) -> None:
    """Keep ``IN_FLIGHT`` messages from central in flight to ship2: mallory plays a ship2
    that takes them and never answers, and learns their ids and central's ACK inbox."""
    if net.ship2 is None:
        net.ship2 = net.mallory.subscribe("ship2.>")
    seen, known = net.ship2, net.ship2_sent
    central = net.nodes["central"]
    path = "node/outbound/publishers/ship2.REQToFileAppend"
    flying = net.info("central", path).get("in_flight", 0)
    if flying < IN_FLIGHT:
        await central.submit(
            [
                Message(
                    to_node="ship2",
                    method="REQToFileAppend",
                    data=b"x\n",
                    ack_timeout=3600,
                    retries=0,
                    reply_method="REQNone",
                )
                for _ in range(IN_FLIGHT - flying)
            ]
        )
    with trio.move_on_after(SETTLE_TIMEOUT):
        while len(known) < IN_FLIGHT or net.info("central", path).get("in_flight", 0) < IN_FLIGHT:
            with trio.move_on_after(0.05):
                inbound: InboundMessage = await seen.receive.receive()
                message = codec.decode(inbound.payload, inbound.headers)
                known[message.id] = inbound.reply
    assert known, "central sent nothing to ship2"


ack_ids = st.sampled_from(["<in-flight>", "", "x"]) | short_text | st.integers() | cbor_leaves
forged_acks = st.one_of(
    st.binary(max_size=256),
    cbor_values.map(cbor_bytes),
    st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([2, 2, 2, "2", 2.0, True, 3, -1, None, HUGE, [2], {"v": 2}])
            | cbor_values,
            "ok": st.lists(ack_ids, max_size=4) | cbor_values,
            "rej": st.lists(
                st.lists(ack_ids | st.text(max_size=200), max_size=3) | cbor_values, max_size=3
            )
            | cbor_values,
        },
    ),
)
ack_headers = st.none() | st.just({"Status": "503"}) | headers


@FUZZ
@given(
    ack=forged_acks,
    headers=ack_headers,
    below=st.sampled_from(["", "", ".1", ".x.y", "-unclaimed"]),
    empty=st.booleans(),
)
# A forged ACK whose version repr() cannot print crashes central's Publisher.
@example(ack={"v": HUGE}, headers=None, below="", empty=False)
def test_forged_acks_change_nothing_but_what_they_name(
    nets: Nets,
    ack: object,
    headers: dict[str, str] | None,
    below: str,
    empty: bool,
) -> None:
    with nets.use() as net:
        net.run(ship2_in_flight, net)
        forge_ack(net, ack, headers, below, empty)


def forge_ack(
    net: Net, ack: object, headers: dict[str, str] | None, below: str, empty: bool
) -> None:
    inbox = next(iter(net.ship2_sent.values()))
    ids = list(net.ship2_sent)

    def real_ids(value: object) -> object:
        if value == "<in-flight>":
            return ids[0]
        if isinstance(value, list):
            return [real_ids(v) for v in value]
        if isinstance(value, dict):
            return {k: real_ids(v) for k, v in value.items()}
        return value

    payload = b"" if empty else ack if isinstance(ack, bytes) else cbor_bytes(real_ids(ack))
    subject = inbox.rpartition(".")[0] + ".999999" if below == "-unclaimed" else inbox + below

    async def forge() -> Health:
        before = net.health()
        net.publish(subject, payload, headers, "")
        await trio.sleep(0.05)
        return before

    before = net.run(forge)
    assert_whole(net, before)


# -- forged JetStream answers -------------------------------------------------------------------

js_answers = st.one_of(
    st.binary(max_size=128),
    st.sampled_from([DEEP_JSON, DEEP_JSON_OBJECT, LONG_NUMBER]),
    st.sampled_from([b"", b"{}", b"[]", b"null", b"1", b'"x"', b'{"error": "x"}']),
    st.sampled_from([b'{"error": {"code": 503}}', b'{"error": [1]}', b'{"stream": "NODES"}']),
    st.sampled_from([b'{"stream": "NODES", "seq": 1}', b'{"stream": "NODES", "seq": [1]}']),
    st.recursive(
        st.none() | st.booleans() | st.integers() | short_text,
        json_containers,
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode()),
)


@FUZZ
@given(
    answer=js_answers,
    api_answer=js_answers,
    mode=st.sampled_from(["stream", "api"]),
)
# JetStream API answers that are JSON but not an object, or whose "error" is not one
# (AttributeError in jetstream.api.api_request), and a publish acknowledgement nested
# deeper than json.loads goes (RecursionError in parse_pub_ack): the Publisher crashes.
@example(answer=b"x", api_answer=b"[]", mode="api")
@example(answer=DEEP_JSON, api_answer=b"{}", mode="stream")
def test_forged_jetstream_answers_change_nothing(
    nets: Nets, answer: bytes, api_answer: bytes, mode: str
) -> None:
    """central sends through a stream the broker does not have; mallory plays JetStream."""
    with nets.use() as net:
        before = net.run(play_jetstream, net, answer, api_answer, mode)
        assert_whole(net, before)


async def play_jetstream(net: Net, answer: bytes, api_answer: bytes, mode: str) -> Health:
    """central sends one message through the stream to a new node (a new Publisher, so a
    new JetStream probe); mallory answers what JetStream would: the publish (``stream``),
    or, as nobody takes the publish, the API requests that follow (``api``)."""
    to_node = f"js{uuid.uuid4().hex[:8]}"
    before = net.health()
    api = net.mallory.subscribe("$JS.API.>")
    stream = net.mallory.subscribe(f"NODES.{to_node}.>") if mode == "stream" else None
    answered = trio.Event()

    async def answer_all(subscription: Subscription, payload: bytes) -> None:
        async for request in subscription.receive:
            if request.reply:
                net.publish(request.reply, payload, None, "")
                answered.set()

    try:
        await net.nodes["central"].submit(
            [
                Message(
                    to_node=to_node,
                    method="REQToFileAppend",
                    data=b"x\n",
                    ack_timeout=1,
                    retries=0,
                    reply_method="REQNone",
                    jetstream=True,
                )
            ]
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_all, api, api_answer)
            if stream is not None:
                nursery.start_soon(answer_all, stream, answer)
            # No API request comes while central's probe keeps its last answer (2 s).
            with trio.move_on_after(1.0):
                await answered.wait()
            await trio.sleep(0.2)  # what the answers start
            nursery.cancel_scope.cancel()
    finally:
        net.mallory.unsubscribe(api)
        if stream is not None:
            net.mallory.unsubscribe(stream)
    return before


@pytest.mark.parametrize(
    "answer", [b"[]", b'{"error": "x"}', DEEP_JSON], ids=["list", "error-text", "deep-json"]
)
def test_a_stream_node_takes_any_jetstream_api_answer(tmp_path: Path, answer: bytes) -> None:
    """ship4 (``delivery = "jetstream"``) asks for its stream and consumer as it starts, and
    the first to answer is mallory: the answer is refused, and the node stays whole."""
    net = Net(tmp_path / "a" / "b" / "c")
    net.jetstream_api_answer = answer
    zero = Health({}, {}, 0)
    try:
        net.start()
        net.run(trio.sleep, 1.0)  # ship4's stream intake had its answer
        assert_whole(net, zero)
    finally:
        net.stop()
        gc.collect()
