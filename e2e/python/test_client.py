"""End-to-end check of the PyPI `tikv-client` (0.0.4, API V1) against a running cluster.

The cluster's placement endpoint comes from the environment variable PD_ENDPOINT
(e.g. 127.0.0.1:2379). Runs under pytest (`pytest e2e/python/test_client.py`) or on its own
(`python3 e2e/python/test_client.py`), in which case it prints pytest-style results and exits
with pytest's codes: 0 all passed, 1 some failed, 4 usage error (no PD_ENDPOINT),
5 no tests collected.
"""

import os
import sys
import time
import traceback

import tikv_client

PD_ENDPOINT = os.environ.get("PD_ENDPOINT", "")
PREFIX = b"py/%d/" % time.time_ns()


def k(name):
    return PREFIX + name.encode()


def as_dict(result):
    """Scan and batch-get results: a dict in 0.0.4, a list of pairs in some builds."""
    if isinstance(result, dict):
        return result
    return dict((bytes(key), bytes(value)) for key, value in result)


def finish(txn, commit=True):
    """Commit or roll back: dropping an open transaction panics inside the client."""
    if commit:
        txn.commit()
    else:
        txn.rollback()


def test_raw_put_get_scan_delete():
    client = tikv_client.RawClient.connect([PD_ENDPOINT])
    assert client.get(k("raw/missing")) is None
    client.put(k("raw/a"), b"1")
    assert client.get(k("raw/a")) == b"1"
    client.put(k("raw/a"), b"2")
    assert client.get(k("raw/a")) == b"2"
    client.batch_put({k("raw/b"): b"3", k("raw/c"): b"4"})
    scanned = as_dict(client.scan(k("raw/"), k("raw0"), 10))
    assert scanned == {k("raw/a"): b"2", k("raw/b"): b"3", k("raw/c"): b"4"}, scanned
    limited = as_dict(client.scan(k("raw/"), k("raw0"), 2))
    assert list(sorted(limited)) == [k("raw/a"), k("raw/b")], limited
    keys = client.scan_keys(k("raw/"), k("raw0"), 10)
    assert [bytes(x) for x in keys] == [k("raw/a"), k("raw/b"), k("raw/c")], keys
    client.delete(k("raw/a"))
    assert client.get(k("raw/a")) is None
    client.delete_range(k("raw/"), k("raw0"))
    assert client.get(k("raw/b")) is None
    assert as_dict(client.scan(k("raw/"), k("raw0"), 10)) == {}


def test_transaction_commit_and_snapshot_read():
    client = tikv_client.TransactionClient.connect([PD_ENDPOINT])
    before = client.current_timestamp()
    txn = client.begin(pessimistic=False)
    txn.put(k("txn/a"), b"1")
    txn.put(k("txn/b"), b"2")
    assert txn.get(k("txn/a")) == b"1", "read-your-own-writes"
    finish(txn)
    snapshot = client.snapshot(client.current_timestamp(), False)
    assert snapshot.get(k("txn/a")) == b"1"
    got = as_dict(snapshot.batch_get([k("txn/a"), k("txn/b"), k("txn/none")]))
    assert got == {k("txn/a"): b"1", k("txn/b"): b"2"}, got
    scanned = as_dict(snapshot.scan(k("txn/"), k("txn0"), 10))
    assert scanned == {k("txn/a"): b"1", k("txn/b"): b"2"}, scanned
    old = client.snapshot(before, False)
    assert old.get(k("txn/a")) is None, "a snapshot before the commit must not see it"


def test_transaction_rollback_and_pessimistic():
    client = tikv_client.TransactionClient.connect([PD_ENDPOINT])
    txn = client.begin(pessimistic=False)
    txn.put(k("rb/x"), b"never")
    finish(txn, commit=False)
    snapshot = client.snapshot(client.current_timestamp(), False)
    assert snapshot.get(k("rb/x")) is None
    txn = client.begin(pessimistic=True)
    assert txn.get_for_update(k("rb/y")) is None
    txn.put(k("rb/y"), b"locked-then-committed")
    finish(txn)
    txn = client.begin(pessimistic=True)
    assert txn.get_for_update(k("rb/y")) == b"locked-then-committed"
    txn.delete(k("rb/y"))
    finish(txn)
    snapshot = client.snapshot(client.current_timestamp(), False)
    assert snapshot.get(k("rb/y")) is None


def main():
    if not PD_ENDPOINT:
        print("PD_ENDPOINT is not set (e.g. PD_ENDPOINT=127.0.0.1:2379)", file=sys.stderr)
        return 4
    tests = [(name, fn) for name, fn in sorted(globals().items())
             if name.startswith("test_") and callable(fn)]
    if not tests:
        print("no tests collected")
        return 5
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
        except Exception:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print(f"FAILED {name}")
            traceback.print_exc()
        else:
            passed += 1
            print(f"PASSED {name}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The 0.0.4 wheel's background runtime threads abort the interpreter during finalization
    # ("PyGILState_Release: thread state ... must be current"); skip finalization.
    os._exit(code)
