#!/usr/bin/env python3
"""Runs a driver's own test suite against several targets and compares the outcomes test by test.

Used by tests/peer_suites.rs (which starts the servers and proxies); see scripts/peer-suites.sh.

    run_suite.py compare --suite psycopg2|pymysql --dir target/peer-suites --out DIR \
        --expected tests/peer/expected-differences.txt --timeout 600 \
        --target direct='{"host": ..., "port": ..., ...}' --target session='{...}' ...

The first target is the reference (directly against the primary). Every test that passes there
must pass on each other target, unless tests/peer/expected-differences.txt lists it with a reason.
Other changes (skipped directly, failing through the proxy) are printed but not counted. With
--parallel the targets run side by side (each needs servers of its own); a target's "primary"
(connection parameters, default: the target itself) is where psycopg2 runs are cleaned up before
they start (leftover prepared transactions) and examined when they time out.
Prints one summary line per run ("psycopg2 session: N passed, N failed, extra: [...]") and exits 1
when an unexpected extra failure appears, 2 on a usage or setup error.

psycopg2 runs under unittest (its own runner: tests.test_suite()); each test's outcome is
recorded by a TestResult subclass into a JSON-lines file as it finishes, so a run killed by the
timeout still tells which test hung. PyMySQL runs under pytest (its tox.ini command), configured
through pymysql/tests/databases.json in a per-target copy of the sdist tree; outcomes come from
pytest's verbose report lines.
"""

import argparse
import concurrent.futures
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

PSYCOPG2_SRC = "psycopg2-2.9.10"
PYMYSQL_SRC = "PyMySQL-0.10.1"
# pytest-timeout's per-test limit (PyMySQL is pure Python, so SIGALRM interrupts a blocked read).
PER_TEST_TIMEOUT_S = 60

PASS, FAIL, ERROR, SKIP, HUNG, NOT_RUN = "pass", "fail", "error", "skip", "unfinished", "not run"
FAILED = (FAIL, ERROR, HUNG)
# The worse outcome wins when one test reports twice (e.g. failed, then errored in teardown).
RANK = {PASS: 0, SKIP: 1, FAIL: 2, ERROR: 3, HUNG: 4, NOT_RUN: 5}


# ---------------------------------------------------------------- child: psycopg2 under unittest


def child_psycopg2(src, record):
    """Run psycopg2's suite (tests.test_suite()) in this process, recording outcomes."""
    import faulthandler
    import unittest

    # On a timeout the parent asks for every thread's stack before killing the run.
    faulthandler.register(signal.SIGUSR1, file=sys.stdout, all_threads=True)
    sys.path.insert(0, src)
    os.chdir(src)
    import tests  # noqa: E402  (psycopg2's tests package, configured by PSYCOPG2_TESTDB*)

    out = open(record, "a", buffering=1)
    started = {}

    def write(test, outcome, detail=""):
        now = time.monotonic()
        if outcome == "started":
            started[test_id(test)] = now
        seconds = round(now - started.get(test_id(test), now), 3)
        out.write(json.dumps({"id": test_id(test), "outcome": outcome, "detail": detail,
                              "seconds": seconds}) + "\n")

    class Recording(unittest.TextTestResult):
        def startTest(self, test):
            write(test, "started")
            super().startTest(test)

        def addSuccess(self, test):
            write(test, PASS)
            super().addSuccess(test)

        def addFailure(self, test, err):
            write(test, FAIL, last_line(self._exc_info_to_string(err, test)))
            super().addFailure(test, err)

        def addError(self, test, err):
            write(test, ERROR, last_line(self._exc_info_to_string(err, test)))
            super().addError(test, err)

        def addSkip(self, test, reason):
            write(test, SKIP, reason)
            super().addSkip(test, reason)

        def addExpectedFailure(self, test, err):
            write(test, PASS, "expected failure")
            super().addExpectedFailure(test, err)

        def addUnexpectedSuccess(self, test):
            write(test, FAIL, "unexpected success")
            super().addUnexpectedSuccess(test)

        def addSubTest(self, test, subtest, err):
            if err is not None:
                kind = FAIL if issubclass(err[0], test.failureException) else ERROR
                write(test, kind, last_line(self._exc_info_to_string(err, test)))
            super().addSubTest(test, subtest, err)

    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=Recording)
    runner.run(tests.test_suite())
    return 0


def test_id(test):
    # unittest's _ErrorHolder (a setUpClass/module failure) has an id() like "setUpClass (x.Y)".
    return test.id()


def last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip()[:300] if lines else ""


def read_psycopg2_record(record):
    outcomes, started = {}, None
    if not os.path.exists(record):
        return outcomes
    with open(record) as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev["outcome"] == "started":
                started = ev["id"]
                outcomes.setdefault(ev["id"], (NOT_RUN, ""))
                continue
            merge(outcomes, ev["id"], ev["outcome"], ev["detail"])
            if started == ev["id"]:
                started = None
    # A test started but never finished: the run was killed while it ran.
    for tid, (outcome, _) in list(outcomes.items()):
        if outcome == NOT_RUN:
            outcomes[tid] = (HUNG, "still running when the run hit its time limit")
    return outcomes


def merge(outcomes, tid, outcome, detail):
    old = outcomes.get(tid)
    if old is None or old[0] == NOT_RUN or RANK[outcome] > RANK[old[0]]:
        outcomes[tid] = (outcome, detail)


# ---------------------------------------------------------------- runs


def primary_connect(primary, dbname="postgres"):
    import psycopg2  # the virtualenv's, built from the sdist

    conn = psycopg2.connect(host=primary["host"], port=primary["port"], user=primary["user"],
                            password=primary["password"], dbname=dbname, connect_timeout=10)
    conn.autocommit = True
    return conn


def pg_before_run(primary):
    """Prepared transactions are cluster-wide: roll back what an earlier run left behind (its
    failed tests skip their cleanup), so one run's failures do not become the next run's."""
    conn = primary_connect(primary)
    cur = conn.cursor()
    cur.execute("SELECT gid, database FROM pg_prepared_xacts")
    left = cur.fetchall()
    conn.close()
    for gid, database in left:  # ROLLBACK PREPARED works only from the xact's own database
        conn = primary_connect(primary, database)
        conn.cursor().execute("ROLLBACK PREPARED %s", (gid,))
        conn.close()


def pg_diagnose(primary, log):
    """What the servers were doing when a run hung: sessions, lock waits, prepared transactions."""
    try:
        conn = primary_connect(primary)
        cur = conn.cursor()
        for title, sql in [
            ("pg_stat_activity", "SELECT pid, datname, usename, state, wait_event_type, "
             "wait_event, xact_start, left(query, 120) FROM pg_stat_activity "
             "WHERE backend_type = 'client backend' ORDER BY pid"),
            ("locks not granted", "SELECT pid, locktype, relation::regclass, mode, "
             "pg_blocking_pids(pid) FROM pg_locks WHERE NOT granted"),
            ("pg_prepared_xacts", "SELECT gid, database, prepared FROM pg_prepared_xacts"),
        ]:
            cur.execute(sql)
            log.write(f"\n--- {title} (primary, when the run was stopped) ---\n")
            for row in cur.fetchall():
                log.write(" | ".join(str(v) for v in row) + "\n")
        conn.close()
    except Exception as e:  # diagnostics only
        log.write(f"\n--- diagnostics failed: {e!r}\n")


def run_target(suite, base, name, params, out_dir, timeout, primary):
    """Run `suite` against one target; returns ({test id: (outcome, detail)}, seconds, note)."""
    venv_py = os.path.join(base, "venv", "bin", "python")
    log_path = os.path.join(out_dir, f"{suite}-{name}.log")
    env = dict(os.environ)
    if suite == "psycopg2":
        record = os.path.join(out_dir, f"{suite}-{name}.jsonl")
        if os.path.exists(record):
            os.remove(record)
        env.update(
            PSYCOPG2_TESTDB=params["dbname"],
            PSYCOPG2_TESTDB_HOST=params["host"],
            PSYCOPG2_TESTDB_PORT=str(params["port"]),
            PSYCOPG2_TESTDB_USER=params["user"],
            PSYCOPG2_TESTDB_PASSWORD=params["password"],
        )
        # Replication tests need a replication connection (PSYCOPG2_TEST_REPL_DSN); the proxy
        # does not offer one, and the suite skips them when the variable is unset.
        env.pop("PSYCOPG2_TEST_REPL_DSN", None)
        pg_before_run(primary)
        cmd = [venv_py, os.path.abspath(__file__), "child-psycopg2", "--src",
               os.path.join(base, PSYCOPG2_SRC), "--record", record]
        cwd = None
    else:
        tree = os.path.join(out_dir, f"pymysql-{name}")
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(os.path.join(base, PYMYSQL_SRC), tree)
        common = {"host": params["host"], "port": params["port"], "user": params["user"],
                  "passwd": params["password"]}
        databases = [dict(common, db=params["db1"], use_unicode=True, local_infile=True),
                     dict(common, db=params["db2"])]
        with open(os.path.join(tree, "pymysql", "tests", "databases.json"), "w") as f:
            json.dump(databases, f)
        cmd = [venv_py, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "addopts=",
               f"--timeout={PER_TEST_TIMEOUT_S}", "pymysql/tests"]
        cwd = tree
        env["COLUMNS"] = "400"  # short summary lines ("FAILED id - cause") untruncated
    started = time.monotonic()
    note = ""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
            note = f"exit {code}"
        except subprocess.TimeoutExpired:
            if suite == "psycopg2":
                proc.send_signal(signal.SIGUSR1)
                time.sleep(1)
                log.flush()
                pg_diagnose(primary, log)
                sockets = subprocess.run(["ss", "-tnp"], capture_output=True, text=True).stdout
                log.write(f"\n--- TCP connections of the test process {proc.pid} ---\n")
                log.write("".join(l + "\n" for l in sockets.splitlines() if f"pid={proc.pid}," in l))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            note = f"killed after {timeout}s"
    seconds = time.monotonic() - started
    if suite == "psycopg2":
        outcomes = read_psycopg2_record(record)
    else:
        outcomes = read_pytest_log(log_path)
    return outcomes, seconds, note


PYTEST_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b(.*)$")
PYTEST_OUTCOME = {"PASSED": PASS, "FAILED": FAIL, "ERROR": ERROR, "SKIPPED": SKIP,
                  "XFAIL": PASS, "XPASS": FAIL}


def read_pytest_log(log_path):
    outcomes, last_started = {}, None
    with open(log_path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = PYTEST_LINE.match(line)
            if m:
                detail = re.sub(r"\s*\[\s*\d+%\]$", "", m.group(3)).strip()
                merge(outcomes, m.group(1), PYTEST_OUTCOME[m.group(2)], detail)
                last_started = None
            elif re.match(r"^\S+::\S+ *$", line):
                last_started = line.strip()
    # Short summary ("FAILED id - reason") gives the failure's one-line cause.
    with open(log_path, errors="replace") as f:
        for line in f:
            m = re.match(r"^(FAILED|ERROR) (\S+::\S+) - (.*)$", line.rstrip("\n"))
            if m and m.group(2) in outcomes:
                outcomes[m.group(2)] = (outcomes[m.group(2)][0], m.group(3)[:300])
    if last_started is not None and last_started not in outcomes:
        outcomes[last_started] = (HUNG, "still running when the run hit its time limit")
    return outcomes


# ---------------------------------------------------------------- comparison


def load_expected(path, suite):
    """[(mode glob, test id glob, reason)] for `suite` from the expected-differences file."""
    entries = []
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            head, sep, reason = line.partition(" -- ")
            parts = head.split()
            if not sep or len(parts) != 3 or not reason.strip():
                raise SystemExit(f"{path}:{n}: want '<suite> <mode|*> <test id glob> -- <why>'")
            if parts[0] == suite:
                entries.append((parts[1], parts[2], reason.strip()))
    return entries


def expected_reason(entries, mode, tid):
    for mode_glob, id_glob, reason in entries:
        if fnmatch.fnmatchcase(mode, mode_glob) and fnmatch.fnmatchcase(tid, id_glob):
            return reason
    return None


def counts(outcomes):
    passed = sum(1 for o, _ in outcomes.values() if o == PASS)
    failed = sum(1 for o, _ in outcomes.values() if o in FAILED)
    skipped = sum(1 for o, _ in outcomes.values() if o == SKIP)
    return passed, failed, skipped


def compare(args):
    targets = []
    for spec in args.target:
        name, sep, js = spec.partition("=")
        if not sep:
            raise SystemExit(f"--target wants NAME=JSON, got {spec!r}")
        targets.append((name, json.loads(js)))
    entries = load_expected(args.expected, args.suite)
    os.makedirs(args.out, exist_ok=True)

    def one(target):
        name, params = target
        outcomes, seconds, note = run_target(args.suite, args.dir, name, params, args.out,
                                             args.timeout, params.get("primary", params))
        print(f"{args.suite} {name}: finished in {seconds:.0f}s ({note}), log "
              f"{os.path.join(args.out, args.suite + '-' + name + '.log')}", flush=True)
        return (name, outcomes, seconds, note)

    if args.parallel:  # each target on servers of its own
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(targets)) as pool:
            results = list(pool.map(one, targets))
    else:
        results = [one(t) for t in targets]

    ref_name, ref, _, _ = results[0]
    unexpected_total = 0
    summary = []
    for name, outcomes, seconds, note in results:
        passed, failed, skipped = counts(outcomes)
        if name == ref_name:
            failing = sorted(t for t, (o, _) in outcomes.items() if o in FAILED)
            summary.append(f"{args.suite} {name}: {passed} passed, {failed} failed, {skipped} "
                           f"skipped, {seconds:.0f}s; failing: {failing}")
            continue
        extra, inherent, fixed = [], [], []
        for tid, (outcome, _) in sorted(ref.items()):
            if outcome != PASS:
                continue
            got, detail = outcomes.get(tid, (NOT_RUN, "not run"))
            if got == PASS:
                continue
            reason = expected_reason(entries, name, tid)
            if reason is None:
                extra.append((tid, got, detail))
            else:
                inherent.append((tid, got, reason))
        other = []  # not counted: the test did not pass directly
        for tid, (outcome, detail) in sorted(outcomes.items()):
            before = ref.get(tid, (NOT_RUN,))[0]
            if outcome == PASS and before in FAILED:
                fixed.append(tid)
            elif before not in (PASS, outcome) and not (before in FAILED and outcome in FAILED):
                other.append((tid, before, outcome, detail))
        unexpected_total += len(extra)
        summary.append(f"{args.suite} {name}: {passed} passed, {failed} failed, {skipped} "
                       f"skipped, {seconds:.0f}s; extra: {[t for t, _, _ in extra]}")
        for tid, got, detail in extra:
            summary.append(f"    EXTRA {got}: {tid}: {detail}")
        for tid, got, reason in inherent:
            summary.append(f"    expected {got}: {tid}: {reason}")
        for tid in fixed:
            summary.append(f"    passes here but not directly: {tid}")
        for tid, before, outcome, detail in other:
            summary.append(f"    differs, not counted (directly {before}, here {outcome}): {tid}: "
                           f"{detail}")
        if note.startswith("killed"):
            summary.append(f"    run {note}")
    print("\n".join(summary), flush=True)
    if not ref or counts(ref)[0] == 0:
        print(f"{args.suite}: the reference run ({ref_name}) passed no test: setup problem")
        return 2
    if unexpected_total:
        print(f"{args.suite}: {unexpected_total} unexpected extra failure(s) through the proxy")
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--suite", choices=["psycopg2", "pymysql"], required=True)
    c.add_argument("--dir", required=True, help="target/peer-suites (venv and sdists)")
    c.add_argument("--out", required=True, help="directory for logs and records")
    c.add_argument("--expected", required=True)
    c.add_argument("--timeout", type=int, default=600, help="seconds per run")
    c.add_argument("--parallel", action="store_true",
                   help="run the targets side by side (each must have servers of its own)")
    c.add_argument("--target", action="append", required=True,
                   help="NAME=JSON, the first is the reference: directly against the primary")
    k = sub.add_parser("child-psycopg2")
    k.add_argument("--src", required=True)
    k.add_argument("--record", required=True)
    args = p.parse_args()
    if args.cmd == "compare":
        return compare(args)
    return child_psycopg2(args.src, args.record)


if __name__ == "__main__":
    sys.exit(main())
